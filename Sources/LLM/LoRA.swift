import Tensor

/// Low-rank update y += scale * (x A) B with A [in, rank] and B [rank, out] (the orientation
/// SAC checkpoints store; transposed relative to PEFT).
public struct LoRAPair: Sendable {
    public let a: FloatBuffer   // [in, rank]
    public let b: FloatBuffer   // [rank, out]
    public let inFeatures: Int
    public let rank: Int
    public let outFeatures: Int

    public init(a: [Float], b: [Float], inFeatures: Int, rank: Int, outFeatures: Int) throws {
        guard a.count == inFeatures * rank, b.count == rank * outFeatures else {
            throw LLMError.invalidInput("LoRA shapes: A has \(a.count) values for [\(inFeatures), \(rank)], B has \(b.count) for [\(rank), \(outFeatures)]")
        }
        self.a = FloatBuffer(a)
        self.b = FloatBuffer(b)
        self.inFeatures = inFeatures
        self.rank = rank
        self.outFeatures = outFeatures
    }

    /// y[rows, out] += scale * (x[rows, in] A) B, using tmp[rows, rank].
    func apply(_ x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, scale: Float, tmp: UnsafeMutablePointer<Float>) {
        BLAS.gemm(m: rows, n: rank, k: inFeatures, a: x, lda: inFeatures, b: a.pointer, ldb: rank, c: tmp, ldc: rank)
        BLAS.gemm(m: rows, n: outFeatures, k: rank, alpha: scale, a: tmp, lda: rank, b: b.pointer, ldb: outFeatures,
                  beta: 1, c: y, ldc: outFeatures)
    }
}

/// LoRA on the q and v projections of each layer (nil where a layer has none).
public struct LoRAWeights: Sendable {
    public var q: [LoRAPair?]
    public var v: [LoRAPair?]
    public var scale: Float

    public init(q: [LoRAPair?], v: [LoRAPair?], scale: Float) {
        self.q = q
        self.v = v
        self.scale = scale
    }

    var maxRank: Int { (q + v).compactMap { $0?.rank }.max() ?? 0 }
}
