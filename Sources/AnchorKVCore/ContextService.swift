import Foundation
import LLM
import SAC
import Tokenizer

/// `compress` / `ask`: one context in a KV file, no store.
public struct CompressResult: Codable, Sendable {
    public var output: String
    public var ratio: Int
    public var adapter: String
    public var contextTokens: Int
    public var anchors: Int
    public var windows: Int
    public var bytes: Int
    public var fullKvFp16Bytes: Int
    public var seconds: Double
    public var tokensPerSecond: Double
}

public struct AskTimings: Codable, Sendable {
    public var compressS: Double
    public var loadS: Double
    public var firstTokenS: Double
    public var decodeS: Double
    public var totalS: Double
}

public struct AskResult: Codable, Sendable {
    public var answer: String
    public var ratio: Int
    public var adapter: String
    public var contextTokens: Int
    public var anchors: Int
    public var answerTokens: Int
    public var kvFp16Bytes: Int
    public var fullKvFp16Bytes: Int
    public var timings: AskTimings
}

public struct GenerationResult: Codable, Sendable {
    public var promptTokens: Int
    public var generatedTokens: Int
    public var promptTokensPerSecond: Double
    public var generationTokensPerSecond: Double
    public var stoppedByToken: Bool
}

/// The model on its own: compress one text into a KV file, answer a question about one context
/// (a text or a KV file), generate text. No store is involved.
public final class ContextService: Sendable {
    public let config: AppConfig
    let model: LlamaModel
    let catalog: AdapterCatalog

    public init(config: AppConfig) throws(CoreError) {
        self.config = config
        model = try KnowledgeService.loadModel(config)
        catalog = AdapterCatalog(model: model, config: config)
    }

    /// Reads a text context: UTF-8, not empty, not binary.
    static func readText(_ path: String) throws(CoreError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw .notFound("cannot read \(path)") }
        guard !data.contains(0), let text = String(data: data, encoding: .utf8) else {
            throw .invalidInput("\(path) is not UTF-8 text; convert it to UTF-8 (e.g. iconv -t UTF-8) first")
        }
        guard !text.allSatisfy(\.isWhitespace) else { throw .invalidInput("\(path) is empty; there is nothing to compress") }
        return text
    }

    /// Compresses a text file into a KV file (f16 or f32 tensors).
    public func compress(file: String, output: String? = nil, dtype: String = "f16", adapter choice: AdapterChoice = AdapterChoice()) throws(CoreError) -> CompressResult {
        guard let dt = KVFile.DType(rawValue: dtype) else { throw .invalidInput("the KV file dtype must be f16 or f32, not '\(dtype)'") }
        let text = try Self.readText(file)
        let (adapter, ratio) = try catalog.encoder(choice)
        let out = output ?? file + ".akv"
        let t0 = ContinuousClock.now
        let ctx = try CoreError.mapping {
            try SACEncoder(model: model, mode: adapter.map { .adapter($0) } ?? .plain, ratio: ratio).compress(text: text)
        }
        let seconds = (ContinuousClock.now - t0).seconds
        do { try KVFile.write(ctx, to: out, dtype: dt, extra: ["source": URL(fileURLWithPath: file).lastPathComponent]) } catch {
            throw CoreError(.internalError, "cannot write \(out): \(error)")
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        return CompressResult(output: out, ratio: ratio, adapter: adapter?.fingerprint ?? "none", contextTokens: ctx.contextLength,
                              anchors: ctx.anchorCount, windows: ctx.windowAnchorCounts.count, bytes: bytes,
                              fullKvFp16Bytes: KnowledgeService.fp16KVBytes(rows: ctx.contextLength, model: model),
                              seconds: seconds, tokensPerSecond: seconds > 0 ? Double(ctx.contextLength) / seconds : 0)
    }

    /// Answers a question about one context: a KV file (decoded with the adapter it was made
    /// with) or a text file (compressed first, as `compress` would).
    public func ask(context path: String, question: String, maxTokens: Int? = nil, adapter choice: AdapterChoice = AdapterChoice()) throws(CoreError) -> AskResult {
        let maxTokens = maxTokens ?? config.answerMaxTokens
        guard maxTokens > 0 else { throw .invalidInput("the answer length must be positive") }
        guard !question.allSatisfy(\.isWhitespace) else { throw .invalidInput("the question is empty") }
        guard FileManager.default.fileExists(atPath: path) else { throw .notFound("context file \(path) does not exist") }
        let t0 = ContinuousClock.now
        let ctx: CompressedContext
        let adapter: SACAdapter?
        var compressSeconds = 0.0
        if KVFile.looksLikeKVFile(path) {
            ctx = try CoreError.mapping { try KVFile.read(path).context }
            if let r = choice.ratio, r != ctx.ratio { throw .invalidInput("ratio \(r) asked for, but \(path) was compressed at ratio \(ctx.ratio)") }
            adapter = try catalog.decoder(fingerprint: ctx.adapterFingerprint, ratio: ctx.ratio, adapterPath: choice.adapterPath)
        } else {
            let text = try Self.readText(path)
            let (a, ratio) = try catalog.encoder(choice)
            ctx = try CoreError.mapping { try SACEncoder(model: model, mode: a.map { .adapter($0) } ?? .plain, ratio: ratio).compress(text: text) }
            adapter = a
            compressSeconds = (ContinuousClock.now - t0).seconds
        }
        let answer = try CoreError.mapping { try SACDecoder(model: model, adapter: adapter).answer(ctx, question: question, maxTokens: maxTokens) }
        return AskResult(answer: answer.text, ratio: ctx.ratio, adapter: ctx.adapterFingerprint ?? "none", contextTokens: ctx.contextLength,
                         anchors: ctx.anchorCount, answerTokens: answer.tokens.count,
                         kvFp16Bytes: KnowledgeService.fp16KVBytes(rows: ctx.anchorCount, model: model),
                         fullKvFp16Bytes: KnowledgeService.fp16KVBytes(rows: ctx.contextLength, model: model),
                         timings: AskTimings(compressS: compressSeconds, loadS: answer.loadSeconds, firstTokenS: answer.loadSeconds + answer.prefillSeconds,
                                             decodeS: answer.decodeSeconds, totalS: (ContinuousClock.now - t0).seconds))
    }

    public struct GenerationRequest: Sendable {
        public var prompt: String
        /// Wrap the prompt as a user turn in the model's chat template.
        public var chat = false
        public var system: String?
        public var maxTokens: Int?
        public var temperature: Float?
        public var topP: Float?
        public var seed: UInt64?
        public init(prompt: String, chat: Bool = false, system: String? = nil, maxTokens: Int? = nil, temperature: Float? = nil,
                    topP: Float? = nil, seed: UInt64? = nil) {
            self.prompt = prompt; self.chat = chat; self.system = system; self.maxTokens = maxTokens
            self.temperature = temperature; self.topP = topP; self.seed = seed
        }
    }

    /// Generates text with the plain model; `onText` gets the text as whole UTF-8 characters.
    public func generate(_ r: GenerationRequest, onText: (String) -> Void) throws(CoreError) -> GenerationResult {
        let maxTokens = r.maxTokens ?? config.maxTokens, temperature = r.temperature ?? config.temperature
        let topP = r.topP ?? config.topP, seed = r.seed ?? config.seed
        guard maxTokens > 0 else { throw .invalidInput("the number of tokens to generate must be positive") }
        guard temperature >= 0 else { throw .invalidInput("the temperature must be >= 0") }
        guard topP > 0, topP <= 1 else { throw .invalidInput("top-p must be in (0, 1]") }
        var text = r.prompt
        if r.chat {
            var messages: [ChatMessage] = []
            if let s = r.system { messages.append(ChatMessage(role: "system", content: s)) }
            messages.append(ChatMessage(role: "user", content: r.prompt))
            text = ChatTemplate.chatML(defaultSystem: model.defaultSystemPrompt).render(messages, addGenerationPrompt: true)
        }
        let ids = model.tokenizer.encode(text, parseSpecial: true)
        guard !ids.isEmpty else { throw .invalidInput("the prompt is empty; pass some text") }
        var decoder = model.tokenizer.makeStreamingDecoder()
        let stats = try CoreError.mapping {
            try model.generate(prompt: ids, maxTokens: maxTokens, sampling: SamplingParameters(temperature: temperature, topP: topP, seed: seed)) { id in
                let piece = decoder.append(id)
                if !piece.isEmpty { onText(piece) }
                return true
            }
        }
        onText(decoder.flush())
        return GenerationResult(promptTokens: stats.promptTokens, generatedTokens: stats.generatedTokens,
                                promptTokensPerSecond: stats.prefillTokensPerSecond, generationTokensPerSecond: stats.decodeTokensPerSecond,
                                stoppedByToken: stats.stoppedByToken)
    }
}
