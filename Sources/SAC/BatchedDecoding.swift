import Foundation
import LLM

/// A question being answered with continuous batching: its session (anchors + first block in
/// the cache), its sampler, and the tokens so far. Made by `SACDecoder.start`, advanced with
/// other sequences (of any context, ratio or adapter of the same base model) by `SACDecoder.advance`.
public final class DecodeSequence {
    public let session: InferenceSession
    public private(set) var tokens: [Int32] = []
    /// Ended: at a stop token, at its token limit, or by `finish`.
    public private(set) var isFinished = false
    public private(set) var stoppedByToken = false
    /// Tokens of the first block ([LM] and the question segment).
    public let questionTokens: Int
    /// Seconds `start` took to load the context into the cache, and to run the first block.
    public internal(set) var loadSeconds = 0.0, prefillSeconds = 0.0
    let maxTokens: Int
    let stopTokens: Set<Int32>
    var sampler: Sampler
    var logits: [Float]

    init(session: InferenceSession, logits: [Float], maxTokens: Int, stopTokens: Set<Int32>, sampling: SamplingParameters, questionTokens: Int) {
        self.session = session
        self.logits = logits
        self.maxTokens = maxTokens
        self.stopTokens = stopTokens
        self.sampler = Sampler(sampling)
        self.questionTokens = questionTokens
    }

    /// Samples the next token from the current logits, as `SACDecoder.answer` does; nil when the
    /// sequence ended instead (a stop token, which is not kept).
    func sampleNext() -> Int32? {
        guard !isFinished else { return nil }
        let t = logits.withUnsafeBufferPointer { sampler.sample($0) }
        if stopTokens.contains(t) {
            isFinished = true
            stoppedByToken = true
            return nil
        }
        tokens.append(t)
        if tokens.count == maxTokens { isFinished = true }
        return t
    }

    /// Decodes this sequence by itself to its end: each token goes to `onToken`, which returns
    /// false to stop (no forward pass is spent on a token nobody wants).
    public func decodeAlone(onToken: (Int32) -> Bool) throws {
        while let next = sampleNext() {
            if !onToken(next) || isFinished { break }
            logits = try session.forward([next]).logits
        }
    }

    /// Ends the sequence now (its client went away, its deadline passed); it frees its slot at the next step.
    public func finish() { isFinished = true }
}

extension SACDecoder {
    /// Loads the context and runs the first block: a sequence ready to be advanced with others.
    public func start(_ context: CompressedContext, question: String, maxTokens: Int, sampling: SamplingParameters = .greedy) throws -> DecodeSequence {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (block, session) = try prepare(context, question: question, maxTokens: maxTokens)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let logits = try session.forward(block.tokens, options: block.options).logits
        let s = DecodeSequence(session: session, logits: logits, maxTokens: maxTokens, stopTokens: stopTokens, sampling: sampling,
                               questionTokens: block.tokens.count)
        s.loadSeconds = Double(t1 - t0) / 1e9
        s.prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
        return s
    }

    /// What `start` needs for one sequence, for starting several at once.
    public struct StartRequest {
        public let decoder: SACDecoder
        public let context: CompressedContext
        public let question: String
        public let maxTokens: Int
        public let sampling: SamplingParameters
        public init(decoder: SACDecoder, context: CompressedContext, question: String, maxTokens: Int, sampling: SamplingParameters) {
            self.decoder = decoder; self.context = context; self.question = question; self.maxTokens = maxTokens; self.sampling = sampling
        }
    }

    /// Starts several sequences (of any decoders of one base model) at once: each context goes
    /// into its own session, then all first blocks run as one batched prefill
    /// (`InferenceSession.prefill`). Each sequence is the one `start` makes for its request.
    public static func start(_ requests: [StartRequest]) throws -> [DecodeSequence] {
        if requests.count == 1 {
            let r = requests[0]
            return [try r.decoder.start(r.context, question: r.question, maxTokens: r.maxTokens, sampling: r.sampling)]
        }
        var prepared: [(block: (tokens: [Int32], positions: [Int32], options: ForwardOptions), session: InferenceSession)] = []
        var loadSeconds: [Double] = []
        for r in requests {
            let t0 = DispatchTime.now().uptimeNanoseconds
            prepared.append(try r.decoder.prepare(r.context, question: r.question, maxTokens: r.maxTokens))
            loadSeconds.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let t1 = DispatchTime.now().uptimeNanoseconds
        let logits = try InferenceSession.prefill(prepared.map(\.session), blocks: prepared.map { ($0.block.tokens, $0.block.options) })
        let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
        return requests.indices.map { i in
            let r = requests[i], p = prepared[i]
            let s = DecodeSequence(session: p.session, logits: logits[i], maxTokens: r.maxTokens, stopTokens: r.decoder.stopTokens,
                                   sampling: r.sampling, questionTokens: p.block.tokens.count)
            s.loadSeconds = loadSeconds[i]
            s.prefillSeconds = prefillSeconds
            return s
        }
    }

    /// One step of continuous batching: each unfinished sequence samples its next token, then the
    /// ones that go on share one batched forward step (`InferenceSession.step`). Returns the token
    /// each sequence produced at this step (nil: it had ended, or ended here at a stop token).
    /// A sequence's tokens are exactly those `answer` gives for the same context and question.
    @discardableResult
    public static func advance(_ sequences: [DecodeSequence]) throws -> [Int32?] {
        let produced = sequences.map { $0.sampleNext() }
        var going: [DecodeSequence] = [], next: [Int32] = []
        for (s, t) in zip(sequences, produced) where !s.isFinished {
            if let t { going.append(s); next.append(t) }
        }
        if !going.isEmpty {
            let logits = try InferenceSession.step(going.map(\.session), tokens: next)
            for (s, l) in zip(going, logits) { s.logits = l }
        }
        return produced
    }
}
