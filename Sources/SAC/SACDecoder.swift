import Foundation
import LLM
import Tensor

public struct SACAnswer: Sendable {
    public var tokens: [Int32]
    public var text: String
    /// Seconds to load the anchor KV into the cache (RoPE on keys).
    public var loadSeconds: Double
    /// Seconds for the [LM] + question block (time to the first answer token).
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stoppedByToken: Bool
    public var questionTokens: Int
}

/// Answers questions from anchor KVs with the frozen base model: the anchors are the past KV
/// cache (keys rotated at their positions), then [LM] at position N and the question segment
/// at N+1..., causal, greedy. Without an adapter there is no [LM] and the question starts at N+1.
public final class SACDecoder: Sendable {
    public let model: LlamaModel
    public let adapter: SACAdapter?
    public let layout: SACLayout
    private let modelFingerprint: String
    let stopTokens: Set<Int32>

    public init(model: LlamaModel, adapter: SACAdapter?) throws {
        self.model = model
        self.adapter = adapter
        modelFingerprint = try model.fingerprint()
        if let a = adapter, a.baseModel != modelFingerprint {
            throw SACError.modelMismatch(what: "the adapter", expected: a.baseModel, found: modelFingerprint)
        }
        layout = adapter?.layout ?? .defaults(for: model)
        stopTokens = model.stopTokens.union([layout.eosID])
    }

    /// A session whose cache holds the context's anchors, keys rotated at their positions.
    public func load(_ context: CompressedContext, extraCapacity: Int) throws -> InferenceSession {
        try validate(context)
        let c = model.config
        let n = context.anchorCount
        let session = model.makeSession(capacity: n + extraCapacity)
        let cache = session.cache
        let half = c.headDim / 2
        let cos = FloatBuffer(count: n * half), sin = FloatBuffer(count: n * half)
        model.rope.table(positions: context.positions, cos: cos.pointer, sin: sin.pointer)
        for l in 0..<c.layerCount {
            let k = cache.keys(layer: l), v = cache.values(layer: l)
            context.keys[l].withUnsafeBufferPointer { k.update(from: $0.baseAddress!, count: n * c.kvDim) }
            context.values[l].withUnsafeBufferPointer { v.update(from: $0.baseAddress!, count: n * c.kvDim) }
            model.rope.apply(k, rows: n, ld: c.kvDim, heads: c.kvHeadCount, cos: cos.pointer, sin: sin.pointer)
        }
        cache.commit(rows: n)
        cache.nextPosition = Int32(context.contextLength)
        return session
    }

    /// Refuses, before any work, a context this decoder cannot answer from (another model or
    /// adapter, another shape) or an answer that would run past the model's context.
    public func check(_ context: CompressedContext, question: String, maxTokens: Int) throws {
        try validate(context)
        _ = try firstBlock(question: question, contextLength: context.contextLength, maxTokens: maxTokens)
    }

    func validate(_ context: CompressedContext) throws {
        try context.validate()
        guard context.modelFingerprint == modelFingerprint else {
            throw SACError.modelMismatch(what: "the compressed context", expected: context.modelFingerprint, found: modelFingerprint)
        }
        guard context.adapterFingerprint == adapter?.fingerprint else {
            throw SACError.adapterMismatch(expected: context.adapterFingerprint ?? "none (no adapter)",
                                           found: adapter?.fingerprint ?? "none (no adapter)")
        }
        let c = model.config
        guard context.layerCount == c.layerCount, context.kvDim == c.kvDim else {
            throw SACError.invalidInput("the context has \(context.layerCount) layers x \(context.kvDim), the model \(c.layerCount) x \(c.kvDim)")
        }
    }

    /// The decoder's first block: [LM] (with an adapter) + the question segment, and its positions.
    public func firstBlock(question: String, contextLength: Int) -> (tokens: [Int32], positions: [Int32], options: ForwardOptions) {
        let q = layout.questionTokens(question, model: model)
        let N = Int32(contextLength)
        var options = ForwardOptions(attention: .causal)
        if let a = adapter {
            // [LM] has no vocabulary id: row 0 carries a placeholder id and its embedding is replaced.
            options.embeddingReplacements = [(row: 0, vector: a.lmEmbedding)]
            let tokens = [layout.bosID] + q
            options.positions = (0..<tokens.count).map { N + Int32($0) }
            return (tokens, options.positions!, options)
        }
        options.positions = (0..<q.count).map { N + 1 + Int32($0) }
        return (q, options.positions!, options)
    }

    /// Logits of every row of the first block (for tests and evaluation). `exactDecode`: the LM
    /// head reads fp32 activations instead of the int16 decode kernels.
    public func firstBlockLogits(_ context: CompressedContext, question: String, exactDecode: Bool = false) throws -> [Float] {
        let block = firstBlock(question: question, contextLength: context.contextLength)
        let session = try load(context, extraCapacity: block.tokens.count)
        var options = block.options
        options.output = .all
        if exactDecode { options.integerDecode = false }
        return try session.forward(block.tokens, options: options).logits
    }

    /// Logits after the first block and after each of `forced` tokens (teacher forcing), one
    /// row per step: [forced.count + 1, vocab].
    public func teacherForcedLogits(_ context: CompressedContext, question: String, forced: [Int32],
                                    exactDecode: Bool = false) throws -> [[Float]] {
        let block = firstBlock(question: question, contextLength: context.contextLength)
        let session = try load(context, extraCapacity: block.tokens.count + forced.count)
        var rows = [try session.forward(block.tokens, options: block.options).logits]
        for t in forced {
            var o = ForwardOptions()
            if exactDecode { o.integerDecode = false }
            rows.append(try session.forward([t], options: o).logits)
        }
        return rows
    }

    /// The answer (greedy unless `sampling` says otherwise); onToken gets each token as it is
    /// produced and may return false to stop. The same sequence `start` makes, stepped alone.
    public func answer(_ context: CompressedContext, question: String, maxTokens: Int, sampling: SamplingParameters = .greedy,
                       onToken: (Int32) -> Bool = { _ in true }) throws -> SACAnswer {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let seq = try start(context, question: question, maxTokens: maxTokens, sampling: sampling)
        try seq.decodeAlone(onToken: onToken)
        return SACAnswer(tokens: seq.tokens, text: model.tokenizer.decode(seq.tokens, skipSpecial: true),
                         loadSeconds: seq.loadSeconds, prefillSeconds: seq.prefillSeconds,
                         decodeSeconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 - seq.loadSeconds - seq.prefillSeconds,
                         stoppedByToken: seq.stoppedByToken, questionTokens: seq.questionTokens)
    }

    /// The first block of an answer and a session holding the context, sized for it; refused when
    /// the answer would run past the model's context.
    func prepare(_ context: CompressedContext, question: String, maxTokens: Int) throws
        -> (block: (tokens: [Int32], positions: [Int32], options: ForwardOptions), session: InferenceSession) {
        let block = try firstBlock(question: question, contextLength: context.contextLength, maxTokens: maxTokens)
        return (block, try load(context, extraCapacity: block.tokens.count + maxTokens))
    }

    /// The first block, refused when an answer of `maxTokens` after it would run past the model's context.
    func firstBlock(question: String, contextLength: Int, maxTokens: Int) throws -> (tokens: [Int32], positions: [Int32], options: ForwardOptions) {
        guard maxTokens > 0 else { throw SACError.invalidInput("max tokens must be positive") }
        let block = firstBlock(question: question, contextLength: contextLength)
        let lastPosition = Int(block.positions.last!) + maxTokens
        if lastPosition >= model.config.contextLength {
            throw SACError.invalidInput("the answer would reach position \(lastPosition), past the model's context of \(model.config.contextLength) tokens; use a shorter context or fewer max tokens")
        }
        return block
    }
}
