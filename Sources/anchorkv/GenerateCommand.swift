import ArgumentParser
import Foundation
import LLM
import Tokenizer

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt with the plain model (no store).",
        discussion: "Streams the text to stdout; prompt and generation speed go to stderr. Special tokens written in the prompt (such as <|im_start|>) are recognized.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "The prompt text.") var prompt: String
    @Flag(name: .long, help: "Wrap the prompt as a user turn in the model's chat template (ChatML).") var chat = false
    @Option(name: .long, help: "System prompt for --chat (default: the model's own).") var system: String?
    @Option(name: .long, help: "Maximum number of tokens to generate (default 128, or the config file's).") var maxTokens: Int?
    @Option(name: .long, help: "Sampling temperature; 0 is greedy (the default).") var temperature: Float?
    @Option(name: .long, help: "Nucleus sampling mass, with --temperature > 0 (default 0.95).") var topP: Float?
    @Option(name: .long, help: "Random seed for sampling (default 0).") var seed: UInt64?
    @Flag(name: .long, help: "Print the statistics as one JSON object on stderr.") var json = false

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let maxTokens = self.maxTokens ?? cfg.maxTokens, temperature = self.temperature ?? cfg.temperature
        let topP = self.topP ?? cfg.topP, seed = self.seed ?? cfg.seed
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        let model = try modelOptions.load()
        let tok = model.tokenizer
        var text = prompt
        if chat {
            var messages: [ChatMessage] = []
            if let s = system { messages.append(ChatMessage(role: "system", content: s)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            text = ChatTemplate.chatML(defaultSystem: model.defaultSystemPrompt).render(messages, addGenerationPrompt: true)
        }
        let ids = tok.encode(text, parseSpecial: true)
        guard !ids.isEmpty else { throw CLIError("the prompt is empty; pass some text with --prompt") }
        var decoder = tok.makeStreamingDecoder()
        let out = FileHandle.standardOutput
        let stats: GenerationStats
        do {
            stats = try model.generate(prompt: ids, maxTokens: maxTokens,
                                       sampling: SamplingParameters(temperature: temperature, topP: topP, seed: seed)) { id in
                let piece = decoder.append(id)
                if !piece.isEmpty { out.write(Data(piece.utf8)) }
                return true
            }
        } catch {
            throw CLIError("\(error)")
        }
        out.write(Data((decoder.flush() + "\n").utf8))
        if json {
            StandardError.write(jsonString([
                "prompt_tokens": stats.promptTokens, "generated_tokens": stats.generatedTokens,
                "prompt_tokens_per_second": stats.prefillTokensPerSecond,
                "generation_tokens_per_second": stats.decodeTokensPerSecond,
                "stopped_by_token": stats.stoppedByToken,
            ]) + "\n")
        } else {
            StandardError.write(String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s\n",
                                       stats.promptTokens, stats.prefillTokensPerSecond,
                                       stats.generatedTokens, stats.decodeTokensPerSecond))
        }
    }
}
