/// A context compressed into anchor KVs: per layer, the anchors' keys (before RoPE) and values,
/// each [anchorCount, kvDim] row-major, windows concatenated in order. Keys are kept unrotated
/// with each anchor's position so a reader can lay contexts out wherever it needs them.
public struct CompressedContext: Sendable, Equatable {
    /// 1 = every token kept (no compression).
    public var ratio: Int
    /// N: tokens of the encoder input (BOS + header + text). The decoder starts at position N.
    public var contextLength: Int
    /// Global 1-based position of each anchor.
    public var positions: [Int32]
    /// Anchors per window, in window order (sums to positions.count).
    public var windowAnchorCounts: [Int]
    public var keys: [[Float]]
    public var values: [[Float]]
    public var kvDim: Int
    /// LlamaModel.fingerprint() of the model that encoded it.
    public var modelFingerprint: String
    /// SACAdapter.fingerprint of the encoder's adapter; nil for training-free anchors (no adapter).
    public var adapterFingerprint: String?
    /// How anchors were chosen (AnchorSelector.name).
    public var selection: String

    public init(ratio: Int, contextLength: Int, positions: [Int32], windowAnchorCounts: [Int], keys: [[Float]],
                values: [[Float]], kvDim: Int, modelFingerprint: String, adapterFingerprint: String?, selection: String) {
        self.ratio = ratio
        self.contextLength = contextLength
        self.positions = positions
        self.windowAnchorCounts = windowAnchorCounts
        self.keys = keys
        self.values = values
        self.kvDim = kvDim
        self.modelFingerprint = modelFingerprint
        self.adapterFingerprint = adapterFingerprint
        self.selection = selection
    }

    public var anchorCount: Int { positions.count }
    public var layerCount: Int { keys.count }

    /// Checks the invariants a decoder relies on; a KV file or store record that breaks them is rejected.
    public func validate() throws {
        try validateLayout()
        let n = positions.count
        guard keys.allSatisfy({ $0.count == n * kvDim }), values.allSatisfy({ $0.count == n * kvDim }) else {
            throw SACError.invalidInput("every layer needs \(n) x \(kvDim) keys and values")
        }
    }

    /// The invariants that do not involve the tensors: anchors, layers, window counts, positions
    /// (a layout without its tensors, as a streamed KV download has before its first byte, passes).
    public func validateLayout() throws {
        let n = positions.count
        guard n > 0 else { throw SACError.invalidInput("a compressed context needs at least one anchor") }
        guard keys.count == values.count, !keys.isEmpty else { throw SACError.invalidInput("keys and values need the same number of layers (> 0)") }
        guard ratio >= 1, kvDim >= 1 else { throw SACError.invalidInput("ratio \(ratio) and kv_dim \(kvDim) must be positive") }
        // Positions are Int32 in the KV cache; a context longer than that cannot have been encoded.
        guard contextLength >= n, contextLength <= Int(Int32.max) else {
            throw SACError.invalidInput("the context length \(contextLength) is not between the anchor count \(n) and \(Int32.max)")
        }
        guard windowAnchorCounts.allSatisfy({ $0 >= 0 }), windowAnchorCounts.reduce(0, { $0 &+ $1 }) == n else {
            throw SACError.invalidInput("window anchor counts do not add up to \(n)")
        }
        // 1-based and strictly ascending, as the encoder makes them and windows are laid out.
        guard positions.first! >= 1, Int(positions.last!) <= contextLength, zip(positions, positions.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw SACError.invalidInput("anchor positions must be ascending in 1...\(contextLength)")
        }
    }
}
