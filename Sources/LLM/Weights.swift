import CKernels
import Tensor

/// Raw ggml-quantized rows kept for the decode mat-vec kernels.
public struct QuantizedRows: Sendable {
    public let type: UInt32
    public let rowBytes: Int
    public let storage: ByteBuffer
}

/// A linear layer y = x W^T with W [out, in]. Prefill uses W in BF16 (vdpbf16ps, where the CPU
/// has AVX512_BF16) or fp32 W with sgemm; a single token uses the quantized rows when the
/// checkpoint had them (4-5x less memory traffic).
public final class Linear: Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    /// [out, in] fp32, or nil when only quantized rows are kept (the LM head).
    public let weight: FloatBuffer?
    public let quantized: QuantizedRows?
    /// W packed for akv_gemm_bf16 (32-column blocks of bf16 pairs), where the CPU has AVX512_BF16.
    let bf16: ByteBuffer?
    /// Q4_1 / Q8_0 rows interleaved 8 at a time for the decode kernels (akv_q4x8.h): single
    /// tokens and batched steps both go through them, with the integer decode path on.
    let interleaved: (format: Kernels.InterleavedFormat, packed: ByteBuffer)?

    public init(outFeatures: Int, inFeatures: Int, weight: FloatBuffer?, quantized: QuantizedRows?) {
        precondition(weight != nil || quantized != nil)
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.weight = weight
        self.quantized = quantized
        if let weight, Kernels.bf16Available, inFeatures % 2 == 0 {
            let packed = ByteBuffer(count: Int(akv_bf16_packed_bytes(Int64(outFeatures), Int64(inFeatures))))
            akv_bf16_pack(weight.pointer, Int64(outFeatures), Int64(inFeatures), packed.pointer.assumingMemoryBound(to: UInt16.self))
            bf16 = packed
        } else {
            bf16 = nil
        }
        if let q = quantized, Kernels.integerDecode, Kernels.interleavedDecode,
           let format = Kernels.InterleavedFormat(ggmlType: q.type),
           let bytes = Kernels.interleavedBytes(format, rows: outFeatures, cols: inFeatures) {
            let packed = ByteBuffer(count: bytes)
            interleaved = Kernels.interleave(format, rows: outFeatures, cols: inFeatures, source: q.storage.pointer,
                                             rowBytes: q.rowBytes, into: packed.pointer) ? (format, packed) : nil
        } else {
            interleaved = nil
        }
    }

    /// Blocks of at most this many rows multiply through `akv_gemm_f32_rows` (no packing) instead
    /// of sgemm: 1.3-1.9x faster up to ~40 rows on Zen 3, even at ~50, slower past 64.
    public static let shortBlockRows = 48

    /// Whether `apply` takes a block of `rows` rows as a short block.
    public static func isShortBlock(rows: Int) -> Bool { rows <= shortBlockRows }

    /// out[rows, outFeatures] = x[rows, inFeatures] W^T  (+ out when accumulate). `bf16`: several
    /// rows go through the BF16 kernel when the weights were packed for it; else a short block
    /// (`shortBlock`, by default `isShortBlock(rows:)`) through the fp32 row kernel, a longer one
    /// through sgemm. Both fp32 kernels give each row a result that does not depend on the others.
    public func apply(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                      integerDot: Bool = Kernels.integerDecode, bf16 useBF16: Bool = Kernels.bf16Prefill, shortBlock: Bool? = nil) {
        if integerDot, interleaved != nil, rows == 1 || weight == nil {
            applyInterleaved(x, rows: rows, out: out, accumulate: accumulate)
            return
        }
        if rows == 1 || weight == nil {
            let tmp = accumulate ? FloatBuffer(count: outFeatures, zeroed: false) : nil
            for r in 0..<rows {
                let xr = x + r * inFeatures
                let yr = tmp?.pointer ?? (out + r * outFeatures)
                if let q = quantized,
                   Kernels.gemvQuantized(type: q.type, weights: q.storage.pointer, rowBytes: q.rowBytes,
                                         rows: outFeatures, cols: inFeatures, x: xr, y: yr, integerDot: integerDot) {
                } else if let w = weight {
                    Kernels.gemv(weights: w.pointer, ld: inFeatures, rows: outFeatures, cols: inFeatures, x: xr, y: yr)
                } else {
                    dequantizedRowsGemv(xr, yr)
                }
                if let tmp {
                    let o = out + r * outFeatures
                    for i in 0..<outFeatures { o[i] += tmp.pointer[i] }
                }
            }
            return
        }
        if useBF16, let packed = bf16 {
            // Activations rounded to bf16 once; 32-column blocks of W split over the kernel pool.
            let a = ByteBuffer(count: rows * inFeatures * 2)
            let ap = UnsafePointer(a.pointer.assumingMemoryBound(to: UInt16.self))
            akv_bf16_convert(x, Int64(rows * inFeatures), a.pointer.assumingMemoryBound(to: UInt16.self))
            let wp = UnsafePointer(packed.pointer.assumingMemoryBound(to: UInt16.self))
            let (n, k) = (outFeatures, inFeatures)
            withExtendedLifetime(a) {
                Parallel.forRanges((n + 31) / 32, minPerWorker: 2) { part in
                    _ = akv_gemm_bf16(ap, Int64(rows), Int64(k), wp, Int64(n), Int64(part.lowerBound), Int64(part.upperBound),
                                      out, Int64(n), accumulate ? 1 : 0)
                }
            }
            return
        }
        let w = weight!.pointer
        if shortBlock ?? Self.isShortBlock(rows: rows), inFeatures % 8 == 0 {
            // Finer chunks than the decode kernels' (whose jobs are short): a job here runs for
            // milliseconds, and its last chunk is what the other thread waits for.
            Parallel.forRanges(outFeatures, minPerWorker: 48, chunksPerWorker: 16) { part in
                _ = akv_gemm_f32_rows(x, Int64(rows), Int64(inFeatures), Int64(inFeatures), w, Int64(inFeatures),
                                      Int64(part.lowerBound), Int64(part.upperBound), out, Int64(outFeatures), accumulate ? 1 : 0)
            }
            return
        }
        // Output features split over the kernel pool, one single-threaded sgemm per part (see
        // LlamaModel: OpenBLAS runs no threads of its own, whose spinning after each call took
        // a core from the decode kernels).
        Parallel.forRanges(outFeatures, minPerWorker: 64) { part in
            BLAS.gemmTransB(m: rows, n: part.count, k: inFeatures, a: x, lda: inFeatures, b: w + part.lowerBound * inFeatures, ldb: inFeatures,
                            beta: accumulate ? 1 : 0, c: out + part.lowerBound, ldc: outFeatures)
        }
    }

    /// `rows` independent single-token steps (batched decode of different sequences): row i of
    /// `out` is bitwise what `apply(x + i * in, rows: 1, ...)` gives, with each quantized weight row
    /// read once for all of them.
    public func applyIndependentRows(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                                     integerDot: Bool = Kernels.integerDecode) {
        if integerDot, interleaved != nil {
            applyInterleaved(x, rows: rows, out: out, accumulate: accumulate)
            return
        }
        if rows > 1, let q = quantized {
            let tmp = accumulate ? FloatBuffer(count: rows * outFeatures, zeroed: false) : nil
            let done = withExtendedLifetime(tmp) {
                let y = tmp?.pointer ?? out
                guard Kernels.gemmQuantizedRows(type: q.type, weights: q.storage.pointer, rowBytes: q.rowBytes, rows: outFeatures,
                                                cols: inFeatures, n: rows, x: x, y: y, integerDot: integerDot) else { return false }
                // As the single-row path: the product first, then added to what `out` holds.
                if accumulate { for i in 0..<(rows * outFeatures) { out[i] += y[i] } }
                return true
            }
            if done { return }
        }
        for r in 0..<rows { apply(x + r * inFeatures, rows: 1, out: out + r * outFeatures, accumulate: accumulate, integerDot: integerDot) }
    }

    /// All `rows` through the interleaved decode kernels at once (each row's result is what it
    /// gets alone); with `accumulate`, the product first, then added to what `out` holds.
    private func applyInterleaved(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        guard let (format, packed) = interleaved else { preconditionFailure("no interleaved weights") }
        let tmp = accumulate ? FloatBuffer(count: rows * outFeatures, zeroed: false) : nil
        withExtendedLifetime(tmp) {
            let y = tmp?.pointer ?? out
            Kernels.gemmInterleaved(format, packed: packed.pointer, rows: outFeatures, cols: inFeatures, n: rows, x: x, y: y)
            if accumulate { for i in 0..<(rows * outFeatures) { out[i] += y[i] } }
        }
    }

    /// Fallback for quantized types without a decode kernel: dequantize row by row.
    private func dequantizedRowsGemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        guard let q = quantized else { return }
        let cols = inFeatures
        Parallel.forRanges(outFeatures, minPerWorker: 64) { range in
            let row = FloatBuffer(count: cols, zeroed: false)
            for r in range {
                _ = akv_dequantize(q.type, q.storage.pointer + r * q.rowBytes, row.pointer, Int64(cols))
                var s: Float = 0
                for i in 0..<cols { s += row.pointer[i] * x[i] }
                y[r] = s
            }
        }
    }
}

/// Token embedding table [vocab, hidden], fp32 or quantized rows.
public final class EmbeddingTable: Sendable {
    public let vocabSize: Int
    public let hiddenSize: Int
    let f32: FloatBuffer?
    let quantized: QuantizedRows?

    init(vocabSize: Int, hiddenSize: Int, f32: FloatBuffer?, quantized: QuantizedRows?) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.f32 = f32
        self.quantized = quantized
    }

    /// Writes the embedding of `token` into out[hidden].
    public func lookup(_ token: Int32, into out: UnsafeMutablePointer<Float>) {
        let t = Int(token)
        if let f32 {
            out.update(from: f32.pointer + t * hiddenSize, count: hiddenSize)
        } else if let q = quantized {
            _ = akv_dequantize(q.type, q.storage.pointer + t * q.rowBytes, out, Int64(hiddenSize))
        }
    }

    /// The same table as an output projection (tied embeddings).
    var asLinear: Linear { Linear(outFeatures: vocabSize, inFeatures: hiddenSize, weight: f32, quantized: quantized) }
}

public struct LayerWeights: Sendable {
    public let attnNorm: FloatBuffer      // [hidden]
    public let q: Linear                  // [qDim, hidden], HF row order
    public let k: Linear                  // [kvDim, hidden], HF row order
    public let v: Linear                  // [kvDim, hidden]
    public let o: Linear                  // [hidden, qDim]
    public let ffnNorm: FloatBuffer       // [hidden]
    public let gate: Linear               // [ffn, hidden]
    public let up: Linear                 // [ffn, hidden]
    public let down: Linear               // [hidden, ffn]
}

public struct LlamaWeights: Sendable {
    public let embedding: EmbeddingTable
    public let layers: [LayerWeights]
    public let outputNorm: FloatBuffer    // [hidden]
    public let lmHead: Linear             // [vocab, hidden]
}
