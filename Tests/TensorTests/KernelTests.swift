import CKernels
import XCTest
@testable import Tensor

/// Every C kernel against a naive double-precision loop written here.
final class KernelTests: XCTestCase {
    var rng = SplitMixForTests(seed: 7)

    func randoms(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(rng.normal() * scale) } }

    func assertClose(_ got: [Float], _ want: [Double], rel: Double, abs absTol: Double = 1e-6, _ what: String, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, line: line)
        var worst = 0.0
        for (g, w) in zip(got, want) { worst = max(worst, Swift.abs(Double(g) - w) / max(Swift.abs(w), absTol / rel)) }
        XCTAssertLessThanOrEqual(worst, rel, "\(what): worst relative error \(worst)", line: line)
    }

    /// BF16 products: against a double-precision loop over the same bf16-rounded inputs (only
    /// fp32 summation error is left), row and column tails, split column blocks, accumulate, and
    /// each row's result independent of the other rows of the call.
    func testBF16GemmMatchesRoundedReference() throws {
        try XCTSkipUnless(akv_bf16_supported() != 0, "this CPU has no AVX512_BF16")
        let rows = 13, k = 70, n = 45
        let x = randoms(rows * k), w = randoms(n * k, scale: 0.1)
        func bf16(_ f: Float) -> Float {
            var u = f.bitPattern
            u = u &+ 0x7fff &+ ((u >> 16) & 1)
            return Float(bitPattern: u & 0xffff_0000)
        }
        var packed = [UInt16](repeating: 1, count: Int(akv_bf16_packed_bytes(Int64(n), Int64(k))) / 2)
        akv_bf16_pack(w, Int64(n), Int64(k), &packed)
        var a = [UInt16](repeating: 0, count: rows * k)
        akv_bf16_convert(x, Int64(rows * k), &a)
        XCTAssertEqual(a.map { Float(bitPattern: UInt32($0) << 16) }, x.map(bf16), "activations rounded to nearest even")
        var want = [Double](repeating: 0, count: rows * n)
        for r in 0..<rows { for c in 0..<n {
            want[r * n + c] = (0..<k).reduce(0.0) { $0 + Double(bf16(x[r * k + $1])) * Double(bf16(w[c * k + $1])) }
        } }
        let blocks = Int64((n + 31) / 32)
        var out = [Float](repeating: .nan, count: rows * n)
        XCTAssertEqual(akv_gemm_bf16(a, Int64(rows), Int64(k), packed, Int64(n), 0, blocks, &out, Int64(n), 0), 1)
        assertClose(out, want, rel: 1e-5, abs: 1e-4, "bf16 gemm")

        // The same in two calls of one column block each, then accumulated onto itself.
        var split = [Float](repeating: .nan, count: rows * n)
        for b in 0..<blocks { _ = akv_gemm_bf16(a, Int64(rows), Int64(k), packed, Int64(n), b, b + 1, &split, Int64(n), 0) }
        XCTAssertEqual(split, out)
        _ = akv_gemm_bf16(a, Int64(rows), Int64(k), packed, Int64(n), 0, blocks, &split, Int64(n), 1)
        XCTAssertEqual(split, out.map { $0 + $0 })

        // Row 9 alone (in a tile of one) is bitwise row 9 of the 13-row call (in a tile of 5).
        var alone = [Float](repeating: .nan, count: n)
        a.withUnsafeBufferPointer { _ = akv_gemm_bf16($0.baseAddress! + 9 * k, 1, Int64(k), packed, Int64(n), 0, blocks, &alone, Int64(n), 0) }
        XCTAssertEqual(alone, Array(out[9 * n..<10 * n]))
    }

    /// The short-block fp32 kernel: against a double loop, over row and feature tails (every tile
    /// shape), with a row stride wider than k; each row's values bitwise the same alone, in any
    /// feature split and with accumulate (then added to what c held).
    func testShortBlockRowsKernel() {
        let rows = 11, k = 72, lda = 80, n = 17
        let a = randoms(rows * lda), w = randoms(n * k, scale: 0.1)
        var c = [Float](repeating: 0, count: rows * n)
        XCTAssertEqual(akv_gemm_f32_rows(a, Int64(rows), Int64(lda), Int64(k), w, Int64(k), 0, Int64(n), &c, Int64(n), 0), 0)
        let want = (0..<rows * n).map { e in (0..<k).reduce(0.0) { $0 + Double(a[e / n * lda + $1]) * Double(w[e % n * k + $1]) } }
        assertClose(c, want, rel: 1e-5, abs: 1e-5, "f32 rows")
        for r in [0, 5, 10] {
            var alone = [Float](repeating: 0, count: n)
            var split = [Float](repeating: 0, count: n)
            a.withUnsafeBufferPointer { ap in
                _ = akv_gemm_f32_rows(ap.baseAddress! + r * lda, 1, Int64(lda), Int64(k), w, Int64(k), 0, Int64(n), &alone, Int64(n), 0)
                for (f0, f1) in [(0, 4), (4, 5), (5, 17)] {
                    _ = akv_gemm_f32_rows(ap.baseAddress! + r * lda, 1, Int64(lda), Int64(k), w, Int64(k), Int64(f0), Int64(f1), &split, Int64(n), 0)
                }
            }
            XCTAssertEqual(alone, Array(c[r * n..<(r + 1) * n]), "row \(r) alone")
            XCTAssertEqual(split, alone, "row \(r) in feature parts")
        }
        var acc = [Float](repeating: 0.5, count: rows * n)
        _ = akv_gemm_f32_rows(a, Int64(rows), Int64(lda), Int64(k), w, Int64(k), 0, Int64(n), &acc, Int64(n), 1)
        XCTAssertEqual(acc, c.map { 0.5 + $0 })
        XCTAssertEqual(akv_gemm_f32_rows(a, 1, Int64(lda), 12, w, 12, 0, 1, &acc, 1, 0), -1, "k must be a multiple of 8")
    }

    func testRMSNorm() {
        let rows = 5, n = 576
        let x = randoms(rows * n, scale: 3), w = randoms(n)
        var out = [Float](repeating: 0, count: rows * n)
        Kernels.rmsNorm(x, weight: w, out: &out, rows: rows, n: n, eps: 1e-5)
        var want = [Double]()
        for r in 0..<rows {
            let ss = (0..<n).reduce(0.0) { $0 + Double(x[r * n + $1]) * Double(x[r * n + $1]) }
            let s = 1 / (ss / Double(n) + 1e-5).squareRoot()
            want += (0..<n).map { Double(x[r * n + $0]) * s * Double(w[$0]) }
        }
        assertClose(out, want, rel: 1e-5, "rmsnorm")
    }

    func testRoPERotateHalfAndInverse() {
        let hd = 64, heads = 3, rows = 4, half = hd / 2
        let inv = (0..<half).map { pow(100000.0, -Double(2 * $0) / Double(hd)) }
        let rope = RoPE(headDim: hd, inverseFrequencies: inv)
        let positions: [Int32] = [0, 1, 777, 8191]
        let x = randoms(rows * heads * hd)
        var y = x
        rope.apply(&y, positions: positions, ld: heads * hd, heads: heads)
        var want = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<half {
                    let a = Double(positions[r]) * inv[i]
                    let base = r * heads * hd + h * hd
                    let x1 = Double(x[base + i]), x2 = Double(x[base + i + half])
                    want[base + i] = x1 * cos(a) - x2 * sin(a)
                    want[base + i + half] = x2 * cos(a) + x1 * sin(a)
                }
            }
        }
        assertClose(y, want, rel: 1e-5, abs: 1e-5, "rope")
        rope.apply(&y, positions: positions, ld: heads * hd, heads: heads, sign: -1)
        assertClose(y, x.map(Double.init), rel: 1e-5, abs: 1e-5, "rope inverse")
    }

    func testSiLUMulAndSoftmax() {
        var g = randoms(1000, scale: 4)
        let u = randoms(1000)
        let want = zip(g, u).map { Double($0) / (1 + exp(-Double($0))) * Double($1) }
        Kernels.siluMul(&g, u, count: 1000)
        assertClose(g, want, rel: 1e-5, abs: 1e-6, "silu")

        var s = randoms(40, scale: 5)
        let orig = s
        akv_softmax_prefix(&s, 30, 40)
        let m = orig[0..<30].map(Double.init).max()!
        let z = orig[0..<30].reduce(0.0) { $0 + exp(Double($1) - m) }
        let wantS = orig[0..<30].map { exp(Double($0) - m) / z } + [Double](repeating: 0, count: 10)
        assertClose(s, wantS, rel: 1e-5, abs: 1e-7, "softmax")
    }

    /// Random ggml blocks with sane fp16 scales (the decoder itself is checked against the gguf package).
    func quantizedMatrix(type: UInt32, rows: Int, cols: Int) -> (bytes: [UInt8], dense: [Float], rowBytes: Int) {
        let blockBytes = Int(akv_type_block_bytes(type))
        let rowBytes = cols / 32 * blockBytes
        var bytes = (0..<rows * rowBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let scaleOffsets: [Int] = type == 3 ? [0, 2] : [0]
        for b in 0..<(rows * cols / 32) {
            for off in scaleOffsets {
                let h = akv_f32_to_f16(Float(rng.uniform() * 0.05 + 0.001) * (off == 2 ? -1 : 1))
                bytes[b * blockBytes + off] = UInt8(h & 0xFF)
                bytes[b * blockBytes + off + 1] = UInt8(h >> 8)
            }
        }
        var dense = [Float](repeating: 0, count: rows * cols)
        XCTAssertEqual(akv_dequantize(type, bytes, &dense, Int64(rows * cols)), 0)
        return (bytes, dense, rowBytes)
    }

    func testQuantizedGemvBothPaths() {
        let rows = 100, cols = 576
        for type: UInt32 in [2, 3, 8] {
            let (bytes, dense, rowBytes) = quantizedMatrix(type: type, rows: rows, cols: cols)
            let x = randoms(cols)
            let want = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(dense[r * cols + $1]) * Double(x[$1]) } }
            let norm = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Swift.abs(Double(dense[r * cols + $1]) * Double(x[$1])) } }
            var y = [Float](repeating: 0, count: rows)
            XCTAssertEqual(akv_gemv_quant(type, bytes, Int64(rowBytes), x, &y, Int64(cols), 0, Int64(rows)), 0)
            for r in 0..<rows { XCTAssertEqual(Double(y[r]), want[r], accuracy: 1e-5 * norm[r], "fp32 path type \(type) row \(r)") }

            // Integer path: error bounded by the int16 rounding of x (half a step per element).
            var xq = [Int16](repeating: 0, count: cols), xd = [Float](repeating: 0, count: cols / 32), xs = xd
            akv_quantize_q16(x, Int64(cols), &xq, &xd, &xs)
            for i in 0..<cols {
                XCTAssertEqual(Double(xq[i]) * Double(xd[i / 32]), Double(x[i]), accuracy: Double(xd[i / 32]) * 0.5 + 1e-7, "q16 element \(i)")
            }
            for b in 0..<cols / 32 {
                XCTAssertEqual(Double(xs[b]), Double(xd[b]) * Double((0..<32).reduce(0) { $0 + Int(xq[b * 32 + $1]) }), accuracy: 1e-4)
            }
            var yq = [Float](repeating: 0, count: rows)
            XCTAssertEqual(akv_gemv_quant_q16(type, bytes, Int64(rowBytes), xq, xd, xs, &yq, Int64(cols), 0, Int64(rows)), 0)
            for r in 0..<rows {
                let bound = (0..<cols).reduce(0.0) { $0 + Swift.abs(Double(dense[r * cols + $1])) * Double(xd[$1 / 32]) * 0.5 }
                XCTAssertEqual(Double(yq[r]), want[r], accuracy: bound + 1e-5 * norm[r], "int16 path type \(type) row \(r)")
            }
        }
        XCTAssertEqual(akv_gemv_quant(14, [UInt8](repeating: 0, count: 210), 210, [Float](repeating: 0, count: 256), nil, 256, 0, 0), -1)
    }

    /// Interleaved Q4_1 and Q8_0 (8 rows a group), on int16 activations, and Q4_1 on int8
    /// activations: against a double loop over the same dequantized weights and quantized
    /// activations (only fp32 summation error left); VNNI and AVX2 give the same bits; each
    /// activation row's result is the same alone and in batches of every size (1-9: groups of 4
    /// and their tails); a split over row groups writes only its rows.
    func testInterleavedKernelsBatchedEqualsAlone() throws {
        for type: UInt32 in [3, 8] { try checkInterleaved(type: type, int8: false) }
        try checkInterleaved(type: 3, int8: true)
    }

    func checkInterleaved(type: UInt32, int8: Bool) throws {
        let rows = 48, cols = 576, nb = cols / 32
        let name = "type \(type)\(int8 ? " int8" : "")"
        let (bytes, dense, rowBytes) = quantizedMatrix(type: type, rows: rows, cols: cols)
        let size = int8 ? akv_q4x8_i8_packed_bytes(Int64(rows), Int64(cols))
            : type == 3 ? akv_q4x8_packed_bytes(Int64(rows), Int64(cols)) : akv_q8x8_packed_bytes(Int64(rows), Int64(cols))
        XCTAssertEqual(Int(size), rows * rowBytes, "interleaving keeps the size")
        var packed = [UInt8](repeating: 0, count: Int(size))
        let pack = int8 ? akv_q4x8_i8_pack : type == 3 ? akv_q4x8_pack : akv_q8x8_pack
        XCTAssertEqual(pack(bytes, Int64(rowBytes), Int64(rows), Int64(cols), &packed), 0)
        XCTAssertEqual(pack(bytes, Int64(rowBytes), 44, Int64(cols), &packed), -1, "rows not a multiple of 8")
        let n = 9
        let x = randoms(n * cols, scale: 2)
        var xq = [Int16](repeating: 0, count: n * cols), xq8 = [Int8](repeating: 0, count: n * cols)
        var xd = [Float](repeating: 0, count: n * nb), xs = xd
        for i in 0..<n {
            x.withUnsafeBufferPointer { xp in xd.withUnsafeMutableBufferPointer { d in xs.withUnsafeMutableBufferPointer { s in
                let (xi, di, si) = (xp.baseAddress! + i * cols, d.baseAddress! + i * nb, s.baseAddress! + i * nb)
                if int8 {
                    xq8.withUnsafeMutableBufferPointer { akv_quantize_q8(xi, Int64(cols), $0.baseAddress! + i * cols, di, si) }
                } else {
                    xq.withUnsafeMutableBufferPointer { akv_quantize_q16(xi, Int64(cols), $0.baseAddress! + i * cols, di, si) }
                }
            } } }
        }
        let quantized = int8 ? xq8.map(Double.init) : xq.map(Double.init)
        if int8 {
            XCTAssertFalse(xq8.contains(-128), "int8 activations stay in [-127, 127] (the int16 sums of vpmaddubsw stay exact)")
            for b in 0..<(n * nb) {
                let sum = (0..<32).reduce(0.0) { $0 + quantized[b * 32 + $1] }
                XCTAssertEqual(Double(xs[b]), sum * Double(xd[b]), accuracy: 1e-4 * Swift.abs(sum * Double(xd[b])) + 1e-6, "xsum of block \(b)")
            }
        }
        func run(_ count: Int, first: Int = 0, vnni: Int32 = 0, groups: Range<Int> = 0..<6) -> [Float] {
            var y = [Float](repeating: .nan, count: count * rows)
            let (g0, g1) = (Int64(groups.lowerBound), Int64(groups.upperBound))
            let rc = xd.withUnsafeBufferPointer { d in xs.withUnsafeBufferPointer { s in
                let (dp, sp) = (d.baseAddress! + first * nb, s.baseAddress! + first * nb)
                if int8 {
                    return xq8.withUnsafeBufferPointer { akv_gemm_q4x8_q8(packed, Int64(count), $0.baseAddress! + first * cols, dp, sp, &y, Int64(rows), Int64(cols), g0, g1, vnni) }
                }
                return xq.withUnsafeBufferPointer { q in
                    type == 3
                        ? akv_gemm_q4x8_q16(packed, Int64(count), q.baseAddress! + first * cols, dp, sp, &y, Int64(rows), Int64(cols), g0, g1, vnni)
                        : akv_gemm_q8x8_q16(packed, Int64(count), q.baseAddress! + first * cols, dp, &y, Int64(rows), Int64(cols), g0, g1, vnni)
                }
            } }
            XCTAssertEqual(rc, 0)
            return y
        }
        let all = run(n)
        for i in 0..<n {
            let want = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(dense[r * cols + $1]) * quantized[i * cols + $1] * Double(xd[i * nb + $1 / 32]) } }
            let norm = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Swift.abs(Double(dense[r * cols + $1]) * Double(x[i * cols + $1])) } }
            for r in 0..<rows { XCTAssertEqual(Double(all[i * rows + r]), want[r], accuracy: 1e-5 * norm[r], "\(name) activation \(i) row \(r)") }
            XCTAssertEqual(Array(all[i * rows..<(i + 1) * rows]).map(\.bitPattern), run(1, first: i).map(\.bitPattern), "\(name) activation \(i) alone")
        }
        for count in 2...8 {
            XCTAssertEqual(run(count, first: 1).map(\.bitPattern), Array(all[rows..<(1 + count) * rows]).map(\.bitPattern), "\(name) batch of \(count)")
        }
        let part = run(n, groups: 2..<4)
        for i in 0..<n {
            for r in 0..<rows {
                if (16..<32).contains(r) { XCTAssertEqual(part[i * rows + r].bitPattern, all[i * rows + r].bitPattern) } else { XCTAssertTrue(part[i * rows + r].isNaN) }
            }
        }
        if akv_q4x8_vnni_supported() != 0 {
            XCTAssertEqual(run(n, vnni: 1).map(\.bitPattern), all.map(\.bitPattern), "\(name): VNNI and AVX2 give the same integers")
        } else {
            var y = [Float](repeating: 0, count: rows)
            XCTAssertEqual(akv_gemm_q4x8_q16(packed, 1, xq, xd, xs, &y, Int64(rows), Int64(cols), 0, 1, 1), -1, "VNNI asked for on a CPU without it")
            XCTAssertEqual(akv_gemm_q4x8_q8(packed, 1, xq8, xd, xs, &y, Int64(rows), Int64(cols), 0, 1, 1), -1, "VNNI asked for on a CPU without it")
        }
    }

    func testGemvF32AndBLASGemm() {
        let m = 7, n = 33, k = 70
        let a = randoms(m * k), b = randoms(n * k)
        var c = [Float](repeating: 0, count: m * n)
        BLAS.gemmTransB(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
        var want = [Double]()
        for i in 0..<m { for j in 0..<n { want.append((0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(b[j * k + $1]) }) } }
        assertClose(c, want, rel: 1e-4, abs: 1e-4, "sgemm A B^T")
        var y = [Float](repeating: 0, count: n)
        akv_gemv_f32_rows(b, Int64(k), a, &y, Int64(k), 0, Int64(n))
        assertClose(y, Array(want[0..<n].indices.map { j in (0..<k).reduce(0.0) { $0 + Double(b[j * k + $1]) * Double(a[$1]) } }), rel: 1e-4, abs: 1e-4, "gemv f32")
    }

    func testAttentionHeadRows() {
        // 64: the register-blocked path (keys 4 at a time: 48, 49, 50 leave 0, 1, 2 over); 36: the generic one.
        for hd in [64, 36] { checkAttentionHeadRows(hd: hd) }
    }

    private func checkAttentionHeadRows(hd: Int) {
        let keys = 50, rows = 3, ld = 192
        let q = randoms(rows * ld), k = randoms(keys * ld), v = randoms(keys * ld)
        let visible: [Int64] = [48, 49, 50]
        var out = [Float](repeating: 0, count: rows * ld)
        var scratch = [Float](repeating: 0, count: keys)
        let scale: Float = 0.125
        akv_attention_head_rows(q, Int64(ld), k, v, Int64(ld), &out, Int64(ld), Int64(hd), visible, 0, Int64(rows), scale, &scratch)
        for r in 0..<rows {
            let n = Int(visible[r])
            let s = (0..<n).map { j in (0..<hd).reduce(0.0) { $0 + Double(q[r * ld + $1]) * Double(k[j * ld + $1]) } * Double(scale) }
            let m = s.max()!, z = s.reduce(0.0) { $0 + exp($1 - m) }
            for i in 0..<hd {
                let want = (0..<n).reduce(0.0) { $0 + exp(s[$1] - m) / z * Double(v[$1 * ld + i]) }
                XCTAssertEqual(Double(out[r * ld + i]), want, accuracy: 1e-5, "head dim \(hd), row \(r), lane \(i)")
            }
        }
    }
}

/// Deterministic generator for test data (Box-Muller normals).
struct SplitMixForTests {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * .pi * uniform()) }
}
