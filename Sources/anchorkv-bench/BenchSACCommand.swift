import ArgumentParser
import Foundation
import LLM
import SAC

/// SAC costs against the plain model on the same tokens: compression throughput vs plain
/// prefill, and answer latency from anchor KVs vs from the full context. The adapter is random
/// (of the shipped rank): cost does not depend on the trained values.
struct BenchSACCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sac",
        abstract: "Measure SAC compression throughput and answer latency against the plain model.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, parsing: .upToNextOption, help: "Context lengths in tokens.") var contextTokens: [Int] = [510, 2040, 4080]
    @Option(name: .long, parsing: .upToNextOption, help: "Compression ratios.") var ratios: [Int] = [5, 15]
    @Option(name: .long, help: "LoRA rank of the random adapter.") var rank = 32
    @Option(name: .long, help: "Answer tokens decoded per answer (no early stop).") var answerTokens = 16
    @Option(name: .long, help: "Timed repeats per test (after one warm-up).") var repeats = 3
    @Flag(name: .long, help: "Print one JSON object instead of a table.") var json = false

    func run() throws {
        let model = try modelOptions.load()
        var rng = SplitMix64(seed: 7)
        let vocab = UInt64(model.config.vocabSize)
        let question = "Who designed the current lighthouse, and in which year was it completed?"
        var rows: [[String: Any]] = []

        func time(_ body: () throws -> Void) rethrows -> (min: Double, median: Double) {
            try body()
            var s: [Double] = []
            for _ in 0..<repeats { let t0 = Clock.now(); try body(); s.append(Clock.now() - t0) }
            s.sort()
            return (s[0], s[s.count / 2])
        }
        func record(_ test: String, _ n: Int, _ t: (min: Double, median: Double), tokens: Int? = nil) {
            var row: [String: Any] = ["test": test, "context_tokens": n, "min_s": t.min, "median_s": t.median]
            if let k = tokens { row["tokens_per_s_median"] = Double(k) / t.median; row["tokens_per_s_best"] = Double(k) / t.min }
            rows.append(row)
            if !json { StandardError.write(String(format: "%-28@ n=%5d  min %.4f s  median %.4f s%@\n", test as NSString, n, t.min, t.median,
                                                   tokens.map { String(format: "  (%.0f tokens/s)", Double($0) / t.median) } ?? "")) }
        }
        /// answerTokens greedy steps (no early stop), starting from the first block's logits.
        func decodeGreedy(_ session: InferenceSession, from first: [Float]) throws {
            var logits = first
            var sampler = Sampler(.greedy)
            for _ in 0..<answerTokens { logits = try session.forward([logits.withUnsafeBufferPointer { sampler.sample($0) }]).logits }
        }
        let adapters = try Dictionary(uniqueKeysWithValues: ratios.map { ($0, try SACAdapter.random(for: model, ratio: $0, rank: rank)) })
        for n in contextTokens {
            let tokens = [Int32(1)] + (1..<n).map { _ in Int32(rng.next() % vocab) }
            // Plain prefill of the same tokens (what reading the context costs without SAC).
            let plain = model.makeSession(capacity: n + 64)
            var popts = ForwardOptions(positions: (1...n).map { Int32($0) }, output: .none, computeLogits: false)
            popts.attention = .causal
            record("prefill (plain)", n, try time { plain.cache.reset(); _ = try plain.forward(tokens, options: popts) }, tokens: n)
            for r in ratios {
                let enc = try SACEncoder(model: model, mode: .adapter(adapters[r]!))
                record("compress r=\(r)", n, try time { _ = try enc.compress(tokens: tokens) }, tokens: n)
            }
            // Answer latency. Full context: prefill context + question, then decode.
            let fullDecoder = try SACDecoder(model: model, adapter: nil)
            let q = fullDecoder.layout.questionTokens(question, model: model)
            let fullSession = model.makeSession(capacity: n + q.count + answerTokens)
            let ttftFull = try time {
                fullSession.cache.reset()
                _ = try fullSession.forward(tokens + q, options: ForwardOptions(positions: (1...(n + q.count)).map { Int32($0) }))
            }
            record("first token (full context)", n, ttftFull)
            for r in ratios {
                let enc = try SACEncoder(model: model, mode: .adapter(adapters[r]!))
                let ctx = try enc.compress(tokens: tokens)
                let dec = try SACDecoder(model: model, adapter: adapters[r]!)
                let block = dec.firstBlock(question: question, contextLength: ctx.contextLength)
                record("first token (anchors r=\(r))", n, try time {
                    let s = try dec.load(ctx, extraCapacity: block.tokens.count + answerTokens)
                    _ = try s.forward(block.tokens, options: block.options)
                })
                record("answer \(answerTokens) tok (anchors r=\(r))", n, try time {
                    let s = try dec.load(ctx, extraCapacity: block.tokens.count + answerTokens)
                    try decodeGreedy(s, from: try s.forward(block.tokens, options: block.options).logits)
                })
            }
            record("answer \(answerTokens) tok (full context)", n, try time {
                fullSession.cache.reset()
                try decodeGreedy(fullSession, from: try fullSession.forward(tokens + q, options: ForwardOptions(positions: (1...(n + q.count)).map { Int32($0) })).logits)
            })
        }
        if json {
            print(jsonString(["model": model.source, "rank": rank, "repeats": repeats, "answer_tokens": answerTokens,
                              "threads": ProcessInfo.processInfo.environment["ANCHORKV_THREADS"] ?? "all", "rows": rows]))
        }
    }
}
