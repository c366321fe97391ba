import CKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Swift faces of the C kernels, with shape comments. All pointers are row-major float32.
public enum Kernels {
    /// An environment variable's value (the kernel switches below are read once, at first use).
    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// out[rows, n] = rmsnorm(x[rows, n]) * w[n]
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, n: Int, eps: Float) {
        akv_rmsnorm_rows(x, weight, out, Int64(rows), Int64(n), eps)
    }

    /// gate[i] = silu(gate[i]) * up[i]
    public static func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        akv_silu_mul(gate, up, Int64(count))
    }

    /// Decode mat-vecs quantize the activation to int16 blocks and use integer dot products
    /// (~2x faster than fp32 activations, logits within ~1e-3 of them). ANCHORKV_EXACT_DECODE=1
    /// keeps fp32 activations.
    public static let integerDecode = environment("ANCHORKV_EXACT_DECODE") != "1"

    /// Whether prefill products (several rows at once) can run in BF16 with vdpbf16ps: the CPU
    /// has AVX512_BF16 (checked at run time) and ANCHORKV_BF16 is not 0. Weights are packed for
    /// it at load when so: 2-4x the fp32 sgemm rate on AMD Zen 4, results within bf16's 8-bit
    /// mantissa of fp32. Elsewhere prefill is fp32 sgemm.
    public static let bf16Available = environment("ANCHORKV_BF16") != "0" && akv_bf16_supported() != 0

    private static let bf16Switch = Atomic<Bool>(bf16Available)
    /// The default of every forward pass: BF16 prefill where available. Set to false to get the
    /// fp32 path (the golden tests compare it with the reference at fp32 tolerances).
    public static var bf16Prefill: Bool {
        get { bf16Switch.load(ordering: .relaxed) }
        set { bf16Switch.store(newValue && bf16Available, ordering: .relaxed) }
    }

    /// y[rows] = W[rows, cols] x for a quantized ggml matrix, rows split over workers.
    /// Returns false when the type has no decode kernel.
    public static func gemvQuantized(type: UInt32, weights: UnsafeRawPointer, rowBytes: Int, rows: Int, cols: Int,
                                     x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                     integerDot: Bool = integerDecode) -> Bool {
        guard type == 2 || type == 3 || type == 8, cols % 32 == 0 else { return false }
        guard integerDot else {
            Parallel.forRanges(rows, minPerWorker: 64) { r in
                _ = akv_gemv_quant(type, weights, Int64(rowBytes), x, y, Int64(cols), Int64(r.lowerBound), Int64(r.upperBound))
            }
            return true
        }
        let nb = cols / 32
        withUnsafeTemporaryAllocation(of: Int16.self, capacity: cols) { xq in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * nb) { scales in
                let xd = scales.baseAddress!, xsum = xd + nb
                akv_quantize_q16(x, Int64(cols), xq.baseAddress!, xd, xsum)
                let q = UnsafePointer(xq.baseAddress!), d = UnsafePointer(xd), s = UnsafePointer(xsum)
                Parallel.forRanges(rows, minPerWorker: 64) { r in
                    _ = akv_gemv_quant_q16(type, weights, Int64(rowBytes), q, d, s, y, Int64(cols), Int64(r.lowerBound), Int64(r.upperBound))
                }
            }
        }
        return true
    }

    /// Batched decode: y[i, :] = W x[i, :] for `n` independent activation rows (single-token steps
    /// of different sequences), each weight row read once for all of them. Every result is
    /// bitwise what `gemvQuantized` gives for that row alone, so batching never changes an answer.
    /// Returns false when the type has no decode kernel.
    public static func gemmQuantizedRows(type: UInt32, weights: UnsafeRawPointer, rowBytes: Int, rows: Int, cols: Int, n: Int,
                                         x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                         integerDot: Bool = integerDecode) -> Bool {
        guard type == 2 || type == 3 || type == 8, cols % 32 == 0 else { return false }
        guard integerDot else {
            Parallel.forRanges(rows, minPerWorker: 64) { r in
                _ = akv_gemm_quant_rows(type, weights, Int64(rowBytes), Int64(n), x, Int64(cols), y, Int64(rows), Int64(cols),
                                        Int64(r.lowerBound), Int64(r.upperBound))
            }
            return true
        }
        let nb = cols / 32
        withUnsafeTemporaryAllocation(of: Int16.self, capacity: n * cols) { xq in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * n * nb) { scales in
                let xd = scales.baseAddress!, xsum = xd + n * nb
                for i in 0..<n { akv_quantize_q16(x + i * cols, Int64(cols), xq.baseAddress! + i * cols, xd + i * nb, xsum + i * nb) }
                let q = UnsafePointer(xq.baseAddress!), d = UnsafePointer(xd), s = UnsafePointer(xsum)
                Parallel.forRanges(rows, minPerWorker: 64) { r in
                    _ = akv_gemm_quant_q16_rows(type, weights, Int64(rowBytes), Int64(n), q, d, s, y, Int64(rows), Int64(cols),
                                                Int64(r.lowerBound), Int64(r.upperBound))
                }
            }
        }
        return true
    }

    /// Whether Q4_1 and Q8_0 weights are interleaved 8 rows at a time for decode (akv_q4x8.h;
    /// ~90 MB more for SmolLM2). ANCHORKV_INTERLEAVED=0 keeps the row-at-a-time kernels (for
    /// benchmark comparisons).
    public static let interleavedDecode = environment("ANCHORKV_INTERLEAVED") != "0"

    /// Whether the interleaved Q4_1 decode kernels use vpdpwssd (AVX512_VNNI with AVX512VL,
    /// checked at run time; ANCHORKV_VNNI=0 turns it off). Either way the integers, and so the
    /// results, are the same; VNNI only takes fewer instructions.
    public static let vnniAvailable = environment("ANCHORKV_VNNI") != "0" && akv_q4x8_vnni_supported() != 0

    /// Whether decode products over Q4_1 weights take int8 activations (akv_q4x8_i8.h, llama.cpp's
    /// Q4_1 x Q8_1 arithmetic: twice the multiply-adds per instruction of the int16 kernels on
    /// AVX2). Off unless ANCHORKV_DECODE_INT8=1: on SmolLM2 it moves logits by up to ~0.9 (int16:
    /// 4e-3) and can change greedy answers (docs/benchmarks.md). Read when a model's weights are
    /// packed (at load), so it holds per model.
    public static var int8Decode: Bool {
        get { int8Switch.load(ordering: .relaxed) }
        set { int8Switch.store(newValue, ordering: .relaxed) }
    }
    private static let int8Switch = Atomic<Bool>(environment("ANCHORKV_DECODE_INT8") == "1")

    /// Quantized weights interleaved 8 rows at a time for the decode kernels (akv_q4x8.h;
    /// Q4_1 for int8 activations: akv_q4x8_i8.h).
    public enum InterleavedFormat: Sendable {
        case q4_1, q4_1Int8, q8_0

        /// The format for a ggml type, where there is a kernel for it (Q4_1: per `int8`).
        public init?(ggmlType: UInt32, int8: Bool = Kernels.int8Decode) {
            switch ggmlType {
            case 3: self = int8 ? .q4_1Int8 : .q4_1
            case 8: self = .q8_0
            default: return nil
            }
        }
    }

    /// Bytes of W [rows, cols] interleaved, or nil when the shape does not allow it (rows % 8, cols % 32).
    public static func interleavedBytes(_ format: InterleavedFormat, rows: Int, cols: Int) -> Int? {
        guard rows % 8 == 0, cols % 32 == 0, rows > 0 else { return nil }
        switch format {
        case .q4_1: return Int(akv_q4x8_packed_bytes(Int64(rows), Int64(cols)))
        case .q4_1Int8: return Int(akv_q4x8_i8_packed_bytes(Int64(rows), Int64(cols)))
        case .q8_0: return Int(akv_q8x8_packed_bytes(Int64(rows), Int64(cols)))
        }
    }

    /// Interleaves ggml rows (stride rowBytes) into `packed` (interleavedBytes long).
    public static func interleave(_ format: InterleavedFormat, rows: Int, cols: Int, source: UnsafeRawPointer, rowBytes: Int,
                                  into packed: UnsafeMutableRawPointer) -> Bool {
        switch format {
        case .q4_1: return akv_q4x8_pack(source, Int64(rowBytes), Int64(rows), Int64(cols), packed) == 0
        case .q4_1Int8: return akv_q4x8_i8_pack(source, Int64(rowBytes), Int64(rows), Int64(cols), packed) == 0
        case .q8_0: return akv_q8x8_pack(source, Int64(rowBytes), Int64(rows), Int64(cols), packed) == 0
        }
    }

    /// y[i, :] = W x[i, :] for `n` activation rows over interleaved weights: the decode path,
    /// alone (n = 1) and batched alike. Activations are rounded to int16 blocks
    /// (akv_quantize_q16), or int8 blocks for .q4_1Int8 (akv_quantize_q8); each row's result
    /// depends on that row alone, so a batched step answers exactly as the sequence alone.
    public static func gemmInterleaved(_ format: InterleavedFormat, packed: UnsafeRawPointer, rows: Int, cols: Int, n: Int,
                                       x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, useVNNI: Bool = vnniAvailable) {
        precondition(rows % 8 == 0 && cols % 32 == 0 && n >= 1)
        let nb = cols / 32
        let vnni: Int32 = useVNNI && vnniAvailable ? 1 : 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * n * nb) { scales in
            let xd = scales.baseAddress!, xsum = xd + n * nb
            let d = UnsafePointer(xd), s = UnsafePointer(xsum)
            if format == .q4_1Int8 {
                withUnsafeTemporaryAllocation(of: Int8.self, capacity: n * cols) { xq in
                    for i in 0..<n { akv_quantize_q8(x + i * cols, Int64(cols), xq.baseAddress! + i * cols, xd + i * nb, xsum + i * nb) }
                    let q = UnsafePointer(xq.baseAddress!)
                    Parallel.forRanges(rows / 8, minPerWorker: 8) { g in
                        _ = akv_gemm_q4x8_q8(packed, Int64(n), q, d, s, y, Int64(rows), Int64(cols), Int64(g.lowerBound), Int64(g.upperBound), vnni)
                    }
                }
                return
            }
            withUnsafeTemporaryAllocation(of: Int16.self, capacity: n * cols) { xq in
                for i in 0..<n { akv_quantize_q16(x + i * cols, Int64(cols), xq.baseAddress! + i * cols, xd + i * nb, xsum + i * nb) }
                let q = UnsafePointer(xq.baseAddress!)
                Parallel.forRanges(rows / 8, minPerWorker: 8) { g in
                    switch format {
                    case .q4_1:
                        _ = akv_gemm_q4x8_q16(packed, Int64(n), q, d, s, y, Int64(rows), Int64(cols), Int64(g.lowerBound), Int64(g.upperBound), vnni)
                    case .q8_0:
                        _ = akv_gemm_q8x8_q16(packed, Int64(n), q, d, y, Int64(rows), Int64(cols), Int64(g.lowerBound), Int64(g.upperBound), vnni)
                    case .q4_1Int8:
                        preconditionFailure("int8 activations are handled above")
                    }
                }
            }
        }
    }

    /// y[rows] = W[rows, cols] x for fp32 weights with row stride ld.
    public static func gemv(weights: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int,
                            x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        Parallel.forRanges(rows, minPerWorker: 64) { r in
            akv_gemv_f32_rows(weights, Int64(ld), x, y, Int64(cols), Int64(r.lowerBound), Int64(r.upperBound))
        }
    }
}

/// Rotary position embedding in the Hugging Face rotate-half layout.
public struct RoPE: Sendable {
    public let headDim: Int
    public let inverseFrequencies: [Double]  // [headDim / 2]

    public init(headDim: Int, inverseFrequencies: [Double]) {
        precondition(inverseFrequencies.count == headDim / 2)
        self.headDim = headDim
        self.inverseFrequencies = inverseFrequencies
    }

    /// cos/sin tables for the given positions: [rows, headDim/2] each.
    public func table(positions: [Int32], cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        positions.withUnsafeBufferPointer { p in
            inverseFrequencies.withUnsafeBufferPointer { f in
                akv_rope_table(p.baseAddress, Int64(p.count), f.baseAddress, Int64(headDim / 2), cos, sin)
            }
        }
    }

    /// Rotates (sign +1) or un-rotates (sign -1) x[rows, heads * headDim] (row stride ld) in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, heads: Int,
                      cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, sign: Float = 1) {
        akv_rope_apply(x, Int64(rows), Int64(ld), Int64(heads), Int64(headDim), cos, sin, sign)
    }

    /// Rotates rows of x at the given positions (convenience for callers outside a forward pass).
    public func apply(_ x: UnsafeMutablePointer<Float>, positions: [Int32], ld: Int, heads: Int, sign: Float = 1) {
        let half = headDim / 2
        let c = FloatBuffer(count: positions.count * half), s = FloatBuffer(count: positions.count * half)
        table(positions: positions, cos: c.pointer, sin: s.pointer)
        apply(x, rows: positions.count, ld: ld, heads: heads, cos: c.pointer, sin: s.pointer, sign: sign)
    }
}
