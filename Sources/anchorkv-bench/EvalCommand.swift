import ArgumentParser
import Evaluation
import Foundation
import LLM
import SAC

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Answer-quality evaluation on a reading-comprehension JSONL (id, task, context, question, answers).",
        discussion: """
            Systems: sac (the context compressed at --ratio with its adapter, or --no-adapter for training-free anchors), \
            full (the whole context; --lora FILE for the fine-tuned upper bound), closed-book (no context; --lora as for full). \
            Metrics: SQuAD-normalized EM and token F1 (max over gold answers), and the SAC paper's ROUGE-1 F and raw EM \
            (first gold answer), per task. Each distinct context is encoded once. Data: tools/data/prepare_qa.py; \
            the full comparison: tools/eval/run_quality.sh (docs/quality.md).
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sac: SACOptions
    @Option(name: .long, help: "Test set (JSONL).") var data: String
    @Option(name: .long, help: "sac, full or closed-book.") var system = "sac"
    @Option(name: .long, help: "LoRA adapter (anchorkv.lora-adapter) for full / closed-book.") var lora: String?
    @Option(name: .long, help: "Only this task (e.g. quoref, drop).") var task: String?
    @Option(name: .long, help: "Only the first N examples (after --task).") var limit: Int?
    @Option(name: .long, help: "Only the first N examples of each task (a fixed subset when time is short).") var perTask: Int?
    @Option(name: .long, help: "Maximum answer tokens.") var maxTokens = 32
    @Option(name: .long, help: "Write every prediction with its scores to this JSONL file.") var out: String?
    @Flag(name: .long, help: "Print the summary as one JSON object.") var json = false

    func validate() throws {
        guard ["sac", "full", "closed-book"].contains(system) else { throw ValidationError("--system must be sac, full or closed-book") }
        if lora != nil && system == "sac" { throw ValidationError("--lora is for --system full or closed-book; SAC adapters go in --adapter") }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if let perTask, perTask <= 0 { throw ValidationError("--per-task must be positive") }
        if maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
    }

    func run() throws {
        var examples: [QAExample]
        do { examples = try QAExample.load(path: data) } catch { throw CLIError("\(error)") }
        if let task { examples = examples.filter { $0.task == task } }
        if let perTask {
            var seen: [String: Int] = [:]
            examples = examples.filter { e in seen[e.task, default: 0] += 1; return seen[e.task]! <= perTask }
        }
        if let limit { examples = Array(examples.prefix(limit)) }
        guard !examples.isEmpty else { throw CLIError("no examples\(task.map { " for task '\($0)'" } ?? "") in \(data)") }
        let cfg = try modelOptions.appConfig()
        let model = try modelOptions.load()
        let evalSystem: EvalSystem
        var label: String
        do {
            switch system {
            case "sac":
                let (mode, ratio) = try sac.resolveMode(model: model, config: cfg)
                let encoder = try SACEncoder(model: model, mode: mode, ratio: ratio)
                var adapter: SACAdapter?
                if case .adapter(let a) = mode { adapter = a }
                evalSystem = .sac(encoder: encoder, decoder: try SACDecoder(model: model, adapter: adapter))
                label = adapter == nil ? "anchors r=\(ratio), no adapter" : "SAC r=\(ratio)"
            default:
                let weights = try lora.map { try LoRAWeights.load(path: $0, for: model) }
                let layout = SACLayout.defaults(for: model)
                evalSystem = system == "full" ? .fullContext(lora: weights, layout: layout) : .closedBook(lora: weights, layout: layout)
                label = (system == "full" ? "full context" : "closed book") + (weights == nil ? ", base model" : ", LoRA fine-tuned")
            }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }

        let t0 = Clock.now()
        let tty = isatty(2) == 1
        let predictions: [Prediction]
        do {
            predictions = try Evaluator(model: model, system: evalSystem, maxTokens: maxTokens).run(examples) { done, total in
                let elapsed = Clock.now() - t0
                let eta = elapsed / Double(done) * Double(total - done)
                let line = String(format: "%d/%d questions  %.2f s/question  ETA %d:%02d", done, total, elapsed / Double(done), Int(eta) / 60, Int(eta) % 60)
                StandardError.write(tty ? "\r\u{1B}[K" + line : line + "\n")
            }
        } catch { throw CLIError("\(error)") }
        if tty { StandardError.write("\n") }
        let seconds = Clock.now() - t0
        if let out {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let lines = try predictions.map { String(decoding: try enc.encode($0), as: UTF8.self) }
            do { try (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8) } catch {
                throw CLIError("cannot write \(out): \(error)")
            }
        }
        let summary = Evaluator.summary(predictions)
        let tasks = summary.keys.sorted { ($0 == "all" ? "~" : $0) < ($1 == "all" ? "~" : $1) }
        let meanRows = Double(predictions.map(\.kvRows).reduce(0, +)) / Double(predictions.count)
        let meanTokens = Double(predictions.map(\.contextTokens).reduce(0, +)) / Double(predictions.count)
        if json {
            var obj: [String: Any] = ["system": label, "data": data, "seconds": seconds, "questions": predictions.count,
                                      "mean_context_tokens": meanTokens, "mean_kv_rows": meanRows, "max_tokens": maxTokens]
            obj["tasks"] = Dictionary(uniqueKeysWithValues: tasks.map { t in
                let s = summary[t]!
                return (t, ["count": s.count, "em": s.score.em * 100, "f1": s.score.f1 * 100, "rouge1_f": s.score.rouge1 * 100, "raw_em": s.score.rawEM * 100] as [String: Any])
            })
            print(jsonString(obj))
            return
        }
        print("\(label): \(predictions.count) questions in \(String(format: "%.0f", seconds)) s; mean context \(Int(meanTokens)) tokens, KV rows \(Int(meanRows))")
        print("| task | n | EM | F1 | ROUGE-1 F (paper) | raw EM (paper) |\n|---|---:|---:|---:|---:|---:|")
        for t in tasks {
            let s = summary[t]!
            print(String(format: "| %@ | %d | %.1f | %.1f | %.1f | %.1f |", t, s.count, s.score.em * 100, s.score.f1 * 100, s.score.rouge1 * 100, s.score.rawEM * 100))
        }
    }
}
