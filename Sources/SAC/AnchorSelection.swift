/// Chooses which tokens of a window become anchors (the tokens whose K/V are kept).
public protocol AnchorSelector: Sendable {
    /// Recorded in KV files and stores so that a reader knows how anchors were picked.
    var name: String { get }
    /// Local indices of the anchors of window `windowIndex` (length `length`): ascending,
    /// distinct, < length, never empty for length > 0.
    func anchors(windowLength length: Int, ratio: Int, windowIndex: Int) -> [Int]
}

/// SAC's default: the middle token of each group of `ratio` (the lower middle for even ratios),
/// o, o + r, o + 2r, ... with o = (r - 1) / 2; a window no longer than o gets one anchor at 0.
public struct UniformAnchors: AnchorSelector {
    public init() {}
    public var name: String { "uniform" }

    public func anchors(windowLength length: Int, ratio: Int, windowIndex: Int = 0) -> [Int] {
        precondition(ratio >= 1 && length >= 1)
        let o = (ratio - 1) / 2
        if length <= o { return [0] }
        return Array(stride(from: o, to: length, by: ratio))
    }

    /// ceil((L - o) / r) for L > o, else 1.
    public static func count(windowLength length: Int, ratio: Int) -> Int {
        let o = (ratio - 1) / 2
        return length <= o ? 1 : (length - o + ratio - 1) / ratio
    }
}

/// Ablation: as many anchors as the uniform rule gives, at seeded random distinct positions.
public struct RandomAnchors: AnchorSelector {
    public let seed: UInt64
    public init(seed: UInt64 = 0) { self.seed = seed }
    public var name: String { "random(seed=\(seed))" }

    public func anchors(windowLength length: Int, ratio: Int, windowIndex: Int = 0) -> [Int] {
        let n = UniformAnchors.count(windowLength: length, ratio: ratio)
        // SplitMix64 stream per (seed, window), so a window's anchors do not depend on the others.
        var state = seed &+ UInt64(windowIndex) &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var indices = Array(0..<length)
        for i in 0..<n {  // partial Fisher-Yates: the first n entries are a uniform sample
            let j = i + Int(next() % UInt64(length - i))
            indices.swapAt(i, j)
        }
        return indices[0..<n].sorted()
    }
}

