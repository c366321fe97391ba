import AnchorKVCore
import ArgumentParser
import Foundation

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Compress a text file into a SAC KV file (anchor keys and values of every layer).",
        discussion: "The KV file is what `anchorkv ask --context` reads instead of the text. Sizes and timings go to stderr.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "UTF-8 text file to compress.") var file: String
    @Option(name: .shortAndLong, help: "Output KV file (default: FILE.akv).") var output: String?
    @Option(name: .long, help: "Stored element type: f16 (default) or f32.") var dtype: String = "f16"
    @Flag(name: .long, help: "Print the summary as one JSON object on stdout.") var json = false

    func validate() throws {
        guard ["f16", "f32"].contains(dtype) else { throw ValidationError("--dtype must be f16 or f32") }
    }

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let r = try reporting { try ContextService(config: cfg).compress(file: file, output: output, dtype: dtype, adapter: sac.choice) }
        if json { print(Results.json(r)); return }
        StandardError.write(String(format: "compressed %d tokens (%d windows) into %d anchors at ratio %d in %.2f s (%.0f tokens/s): %@, %d bytes (full fp16 KV: %d)\n",
                                   r.contextTokens, r.windows, r.anchors, r.ratio, r.seconds, r.tokensPerSecond, r.output, r.bytes, r.fullKvFp16Bytes))
    }
}

struct AskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Answer a question about one context (a text file, or a KV file from `anchorkv compress`).",
        discussion: "The answer alone is the first line of stdout; sizes and timings go to stderr (or, with --json, one JSON object on stdout).\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sac: SACOptions
    @Option(name: .long, help: "Context: a UTF-8 text file (compressed on the fly) or a .akv KV file.") var context: String
    @Option(name: .long, help: "The question.") var question: String
    @Option(name: .long, help: "Maximum answer tokens (default: the config file's sac.max_answer_tokens, 64).") var maxTokens: Int?
    @Flag(name: .long, help: "Print one JSON object (answer, sizes, timings) on stdout.") var json = false

    func validate() throws {
        if let maxTokens, maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
        guard !question.allSatisfy(\.isWhitespace) else { throw ValidationError("--question is empty") }
    }

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let r = try reporting { try ContextService(config: cfg).ask(context: context, question: question, maxTokens: maxTokens, adapter: sac.choice) }
        if json { print(Results.json(r)); return }
        print(r.answer.replacingOccurrences(of: "\n", with: " "))
        let t = r.timings
        StandardError.write(String(format: "context %d tokens -> %d anchors (ratio %d, %@), KV %.1f KiB fp16 vs %.1f KiB full | compress %.3f s, load %.4f s, first token %.3f s, %d answer tokens in %.3f s\n",
                                   r.contextTokens, r.anchors, r.ratio, r.adapter == "none" ? "no adapter" : "adapter",
                                   Double(r.kvFp16Bytes) / 1024, Double(r.fullKvFp16Bytes) / 1024, t.compressS, t.loadS,
                                   t.firstTokenS, r.answerTokens, t.decodeS))
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt with the plain model (no store).",
        discussion: "Streams the text to stdout; prompt and generation speed go to stderr. Special tokens written in the prompt (such as <|im_start|>) are recognized.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "The prompt text.") var prompt: String
    @Flag(name: .long, help: "Wrap the prompt as a user turn in the model's chat template (ChatML).") var chat = false
    @Option(name: .long, help: "System prompt for --chat (default: the model's own).") var system: String?
    @Option(name: .long, help: "Maximum number of tokens to generate (default 128, or the config file's).") var maxTokens: Int?
    @Option(name: .long, help: "Sampling temperature; 0 is greedy (the default).") var temperature: Float?
    @Option(name: .long, help: "Nucleus sampling mass, with --temperature > 0 (default 0.95).") var topP: Float?
    @Option(name: .long, help: "Random seed for sampling (default 0).") var seed: UInt64?
    @Flag(name: .long, help: "Print the statistics as one JSON object on stderr.") var json = false

    func validate() throws {
        if let maxTokens, maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
        if let temperature, temperature < 0 { throw ValidationError("--temperature must be >= 0") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let out = FileHandle.standardOutput
        let r = try reporting {
            try ContextService(config: cfg).generate(.init(prompt: prompt, chat: chat, system: system, maxTokens: maxTokens, temperature: temperature,
                                                           topP: topP, seed: seed)) { piece in out.write(Data(piece.utf8)) }
        }
        out.write(Data("\n".utf8))
        if json { StandardError.write(Results.json(r) + "\n"); return }
        StandardError.write(String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s\n",
                                   r.promptTokens, r.promptTokensPerSecond, r.generatedTokens, r.generationTokensPerSecond))
    }
}
