import ArgumentParser
import Foundation
import LLM
import SAC

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Compress a text file into a SAC KV file (anchor keys and values of every layer).",
        discussion: "The KV file is what `anchorkv ask --context` reads instead of the text. Sizes and timings go to stderr.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "UTF-8 text file to compress.") var file: String
    @Option(name: .shortAndLong, help: "Output KV file (default: FILE.akv).") var output: String?
    @Option(name: .long, help: "Stored element type: f16 (default) or f32.") var dtype: String = "f16"
    @Flag(name: .long, help: "Print the summary as one JSON object on stdout.") var json = false

    func run() throws {
        guard let dt = KVFile.DType(rawValue: dtype) else { throw ValidationError("--dtype must be f16 or f32") }
        let text = try readTextContext(file)
        let cfg = try modelOptions.appConfig()
        let model = try modelOptions.load()
        let (mode, ratio) = try sac.resolveMode(model: model, config: cfg)
        let out = output ?? file + ".akv"
        let t0 = Clock.now()
        let encoder = try SACEncoder(model: model, mode: mode, ratio: ratio)
        let ctx = try encoder.compress(text: text)
        let seconds = Clock.now() - t0
        do { try KVFile.write(ctx, to: out, dtype: dt, extra: ["source": URL(fileURLWithPath: file).lastPathComponent]) } catch {
            throw CLIError("cannot write \(out): \(error)")
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        let summary: [String: Any] = [
            "output": out, "ratio": ratio, "adapter": encoder.adapter?.fingerprint ?? NSNull(),
            "context_tokens": ctx.contextLength, "anchors": ctx.anchorCount, "windows": ctx.windowAnchorCounts.count,
            "bytes": bytes, "full_kv_fp16_bytes": fp16KVBytes(rows: ctx.contextLength, model: model),
            "seconds": seconds, "tokens_per_second": Double(ctx.contextLength) / seconds,
        ]
        if json { print(jsonString(summary)) } else {
            StandardError.write(String(format: "compressed %d tokens (%d windows) into %d anchors at ratio %d in %.2f s (%.0f tokens/s): %@, %d bytes (full fp16 KV: %d)\n",
                                       ctx.contextLength, ctx.windowAnchorCounts.count, ctx.anchorCount, ratio, seconds,
                                       Double(ctx.contextLength) / seconds, out, bytes, fp16KVBytes(rows: ctx.contextLength, model: model)))
        }
    }
}
