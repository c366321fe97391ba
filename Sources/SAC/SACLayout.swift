import LLM

/// The token layout around a compressed context, read from an adapter's metadata (or taken
/// from the model's own special ids when there is no adapter), never from constants in code.
public struct SACLayout: Sendable, Equatable {
    /// Tokens per independently encoded window.
    public var window: Int
    /// The context starts with this id, then the header text, then the document.
    public var bosID: Int32
    /// Answers end at this id.
    public var eosID: Int32
    public var contextHeader: String
    public var questionPrefix: String
    public var answerPrefix: String

    public init(window: Int = 510, bosID: Int32, eosID: Int32, contextHeader: String = "### Context:\n",
                questionPrefix: String = "\n### Question:\n", answerPrefix: String = "\n### Answer:\n") {
        self.window = window
        self.bosID = bosID
        self.eosID = eosID
        self.contextHeader = contextHeader
        self.questionPrefix = questionPrefix
        self.answerPrefix = answerPrefix
    }

    /// The SAC layout with the model's own BOS/EOS (SmolLM2: 1 = <|im_start|>, 2 = <|im_end|>).
    public static func defaults(for model: LlamaModel) -> SACLayout {
        let tok = model.tokenizer
        let eos = tok.eosID ?? model.stopTokens.min() ?? 0
        return SACLayout(bosID: tok.bosID ?? eos, eosID: eos)
    }

    /// BOS + header + text, each part tokenized on its own with no special tokens parsed.
    public func contextTokens(_ text: String, model: LlamaModel) -> [Int32] {
        let tok = model.tokenizer
        return [bosID] + tok.encode(contextHeader, parseSpecial: false, addBOS: false)
            + tok.encode(text, parseSpecial: false, addBOS: false)
    }

    /// The question segment: prefix, question and answer prefix, each tokenized on its own.
    public func questionTokens(_ question: String, model: LlamaModel) -> [Int32] {
        let tok = model.tokenizer
        return [questionPrefix, question, answerPrefix].flatMap { tok.encode($0, parseSpecial: false, addBOS: false) }
    }
}
