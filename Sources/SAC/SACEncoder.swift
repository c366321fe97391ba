import Foundation
import LLM

/// How a context becomes anchor KVs.
public enum EncoderMode: Sendable {
    /// SAC: the adapter's LoRA and role tokens, windows encoded independently, bidirectional.
    case adapter(SACAdapter)
    /// Training-free baseline: the plain model reads the whole context causally in one pass and
    /// only the anchors' KV is kept (ratio 1 keeps every token: the uncompressed full KV).
    case plain
}

/// Compresses contexts into anchor KVs. Holds one inference session, reused across calls:
/// use one encoder per thread (the model itself is shared).
public final class SACEncoder {
    public let model: LlamaModel
    public let mode: EncoderMode
    public let ratio: Int
    public let layout: SACLayout
    public let selector: AnchorSelector
    private let modelFingerprint: String
    private let session: InferenceSession

    /// `ratio` defaults to the adapter's; with an adapter it must equal the adapter's.
    public init(model: LlamaModel, mode: EncoderMode, ratio: Int? = nil, selector: AnchorSelector = UniformAnchors()) throws {
        self.model = model
        self.mode = mode
        self.selector = selector
        modelFingerprint = try model.fingerprint()
        switch mode {
        case .adapter(let a):
            guard a.baseModel == modelFingerprint else {
                throw SACError.modelMismatch(what: "the adapter", expected: a.baseModel, found: modelFingerprint)
            }
            if let r = ratio, r != a.ratio {
                throw SACError.invalidInput("ratio \(r) asked for, but the adapter is trained for ratio \(a.ratio); pass the adapter for ratio \(r)")
            }
            self.ratio = a.ratio
            layout = a.layout
        case .plain:
            guard let r = ratio, r >= 1 else { throw SACError.invalidInput("the no-adapter encoder needs a ratio >= 1") }
            self.ratio = r
            layout = .defaults(for: model)
        }
        session = model.makeSession(capacity: layout.window)
    }

    public var adapter: SACAdapter? { if case .adapter(let a) = mode { return a } else { return nil } }

    /// The encoder input for a document text: BOS + header + text.
    public func contextTokens(_ text: String) -> [Int32] { layout.contextTokens(text, model: model) }

    public func compress(text: String) throws -> CompressedContext {
        try compress(tokens: contextTokens(text))
    }

    /// Compresses an encoder input (as made by contextTokens). Positions are 1-based and global.
    /// With `deadline`, a window is not started once it has passed (`SACError.deadlinePassed`),
    /// so a long document is stopped within one window's encode of it.
    public func compress(tokens: [Int32], deadline: ContinuousClock.Instant? = nil) throws -> CompressedContext {
        func checkDeadline(_ done: Int, of n: Int) throws {
            if let deadline, ContinuousClock.now >= deadline { throw SACError.deadlinePassed(windowsDone: done, windows: n) }
        }
        guard !tokens.isEmpty else { throw SACError.invalidInput("the context has no tokens") }
        let c = model.config
        let windows = layout.windows.windows(count: tokens.count)
        var anchorsPerWindow: [[Int]] = []  // global indices
        for (w, range) in windows.enumerated() {
            let local = selector.anchors(windowLength: range.count, ratio: ratio, windowIndex: w)
            anchorsPerWindow.append(local.map { range.lowerBound + $0 })
        }
        var keys = [[Float]](repeating: [], count: c.layerCount), values = keys
        switch mode {
        case .adapter(let adapter):
            // Exactly the anchors' size: appending window by window would otherwise let each
            // array grow to up to twice that (a long document's peak memory).
            let total = anchorsPerWindow.reduce(0) { $0 + $1.count } * c.kvDim
            for l in 0..<c.layerCount { keys[l].reserveCapacity(total); values[l].reserveCapacity(total) }
            for (w, range) in windows.enumerated() {
                try checkDeadline(w, of: windows.count)
                let anchors = anchorsPerWindow[w].map { $0 - range.lowerBound }
                guard anchors.count <= adapter.memSize else {
                    throw SACError.invalidInput("window \(w) has \(anchors.count) anchors but the adapter has \(adapter.memSize) role tokens")
                }
                var options = ForwardOptions(
                    positions: range.map { Int32($0 + 1) }, attention: .bidirectional,
                    embeddingAdditions: anchors.enumerated().map { (row: $0.element, vector: adapter.roleToken($0.offset)) },
                    lora: adapter.lora, output: .none, computeLogits: false, captureRows: anchors)
                options.integerDecode = false  // a one-token window must match the block path
                session.cache.reset()
                let result = try session.forward(Array(tokens[range]), options: options)
                for l in 0..<c.layerCount {
                    keys[l] += result.captured[l].keys
                    values[l] += result.captured[l].values
                }
            }
        case .plain:
            try checkDeadline(0, of: windows.count)
            guard tokens.count <= c.contextLength else {
                throw SACError.invalidInput("the context has \(tokens.count) tokens; the no-adapter baseline reads it in one causal pass and the model's context is \(c.contextLength)")
            }
            var options = ForwardOptions(positions: (1...tokens.count).map { Int32($0) }, attention: .causal,
                                         output: .none, computeLogits: false, captureRows: anchorsPerWindow.flatMap { $0 })
            options.integerDecode = false
            let s = model.makeSession(capacity: tokens.count)
            let result = try s.forward(tokens, options: options)
            for l in 0..<c.layerCount {
                keys[l] = result.captured[l].keys
                values[l] = result.captured[l].values
            }
        }
        return CompressedContext(
            ratio: ratio, contextLength: tokens.count, positions: anchorsPerWindow.flatMap { $0 }.map { Int32($0 + 1) },
            windowAnchorCounts: anchorsPerWindow.map(\.count), keys: keys, values: values, kvDim: c.kvDim,
            modelFingerprint: modelFingerprint, adapterFingerprint: adapter?.fingerprint, selection: selector.name)
    }
}
