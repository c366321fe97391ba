import ArgumentParser
import Foundation
import LLM
import SAC

struct AskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Answer a question about one context (a text file, or a KV file from `anchorkv compress`).",
        discussion: "The answer alone is the first line of stdout; sizes and timings go to stderr (or, with --json, one JSON object on stdout).")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sac: SACOptions
    @Option(name: .long, help: "Context: a UTF-8 text file (compressed on the fly) or a .akv KV file.") var context: String
    @Option(name: .long, help: "The question.") var question: String
    @Option(name: .long, help: "Maximum answer tokens (default: the config file's sac.max_answer_tokens, 64).") var maxTokens: Int?
    @Flag(name: .long, help: "Print one JSON object (answer, sizes, timings) on stdout.") var json = false

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let maxTokens = self.maxTokens ?? cfg.answerMaxTokens
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard !question.allSatisfy(\.isWhitespace) else { throw ValidationError("--question is empty") }
        guard FileManager.default.fileExists(atPath: context) else { throw CLIError("context file \(context) does not exist") }
        let model = try modelOptions.load()
        let t0 = Clock.now()
        let ctx: CompressedContext
        let adapter: SACAdapter?
        var compressSeconds = 0.0
        if KVFile.looksLikeKVFile(context) {
            do { ctx = try KVFile.read(context).context } catch { throw CLIError("\(error)") }
            if let r = sac.ratio, r != ctx.ratio { throw CLIError("--ratio \(r) given, but \(context) was compressed at ratio \(ctx.ratio)") }
            adapter = try sac.resolveDecoderAdapter(for: ctx.adapterFingerprint, ratio: ctx.ratio, model: model, config: cfg)
        } else {
            let text = try readTextContext(context)
            let (mode, ratio) = try sac.resolveMode(model: model, config: cfg)
            let encoder = try SACEncoder(model: model, mode: mode, ratio: ratio)
            ctx = try encoder.compress(text: text)
            adapter = encoder.adapter
            compressSeconds = Clock.now() - t0
        }
        let answer: SACAnswer
        do {
            answer = try SACDecoder(model: model, adapter: adapter).answer(ctx, question: question, maxTokens: maxTokens)
        } catch { throw CLIError("\(error)") }
        let total = Clock.now() - t0
        let kvBytes = fp16KVBytes(rows: ctx.anchorCount, model: model), fullBytes = fp16KVBytes(rows: ctx.contextLength, model: model)
        let timings: [String: Any] = [
            "compress_s": compressSeconds, "load_s": answer.loadSeconds, "first_token_s": answer.loadSeconds + answer.prefillSeconds,
            "decode_s": answer.decodeSeconds, "total_s": total,
        ]
        if json {
            print(jsonString([
                "answer": answer.text, "ratio": ctx.ratio, "adapter": ctx.adapterFingerprint ?? NSNull(),
                "context_tokens": ctx.contextLength, "anchors": ctx.anchorCount, "answer_tokens": answer.tokens.count,
                "kv_fp16_bytes": kvBytes, "full_kv_fp16_bytes": fullBytes, "timings": timings,
            ]))
        } else {
            print(answer.text.replacingOccurrences(of: "\n", with: " "))
            StandardError.write(String(format: "context %d tokens -> %d anchors (ratio %d, %@), KV %.1f KiB fp16 vs %.1f KiB full | compress %.3f s, load %.4f s, first token %.3f s, %d answer tokens in %.3f s\n",
                                       ctx.contextLength, ctx.anchorCount, ctx.ratio, ctx.adapterFingerprint == nil ? "no adapter" : "adapter",
                                       Double(kvBytes) / 1024, Double(fullBytes) / 1024, compressSeconds, answer.loadSeconds,
                                       answer.loadSeconds + answer.prefillSeconds, answer.tokens.count, answer.decodeSeconds))
        }
    }
}
