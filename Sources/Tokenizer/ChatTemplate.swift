/// One chat turn.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Chat prompt rendering. Only ChatML (as used by SmolLM2) is implemented.
public struct ChatTemplate: Sendable {
    /// SmolLM2's default system prompt (from the GGUF tokenizer.chat_template).
    public static let smolLM2DefaultSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    public let defaultSystem: String?

    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message; if the first message is not a
    /// system message and `defaultSystem` is non-nil, a system message with it is prepended;
    /// the generation prompt is `<|im_start|>assistant\n`.
    public static func chatML(defaultSystem: String?) -> ChatTemplate {
        ChatTemplate(defaultSystem: defaultSystem)
    }

    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        var out = ""
        if let first = messages.first, first.role != "system", let system = defaultSystem {
            out += "<|im_start|>system\n\(system)<|im_end|>\n"
        }
        for m in messages {
            out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
        }
        if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        return out
    }
}
