import CKernels
import Foundation
import TestSupport
import XCTest
@testable import ModelFormats

/// Golden files from tools/reference/make_format_goldens.py (expected values from the gguf package).
enum Goldens {
    static let dir = Bundle.module.url(forResource: "Goldens", withExtension: nil)!
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    nonisolated(unsafe) static let expected: [String: Any] = {
        let data = try! Data(contentsOf: dir.appendingPathComponent("formats-expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    /// A scratch copy of a golden file, cut or patched, to feed the readers bad input.
    static func mutated(_ name: String, _ edit: (inout Data) -> Void) throws -> String {
        var data = try Data(contentsOf: dir.appendingPathComponent(name))
        edit(&data)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("akv-\(UUID().uuidString)-\(name)")
        try data.write(to: out)
        return out.path
    }
}

final class GGUFTests: XCTestCase {
    func testMetadataOfEveryValueType() throws {
        let f = try GGUFFile(path: Goldens.path("formats.gguf"))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        let md = f.metadata
        XCTAssertEqual(md["test.uint8"], .uint8(200))
        XCTAssertEqual(md["test.int8"], .int8(-100))
        XCTAssertEqual(md["test.uint16"], .uint16(60000))
        XCTAssertEqual(md["test.int16"], .int16(-30000))
        XCTAssertEqual(md["test.uint32"], .uint32(4_000_000_000))
        XCTAssertEqual(md["test.int32"], .int32(-2_000_000_000))
        XCTAssertEqual(md["test.float32"], .float32(1.5))
        XCTAssertEqual(md["test.bool"], .bool(true))
        XCTAssertEqual(md["test.string"]?.string, "héllo wörld ✓")
        XCTAssertEqual(md["test.uint64"], .uint64((UInt64(1) << 63) + 5))
        XCTAssertEqual(md["test.int64"], .int64(-(1 << 62)))
        XCTAssertEqual(md["test.float64"], .float64(3.141592653589793))
        XCTAssertEqual(md["test.array_int"]?.intArray, [1, 2, 3, -4])
        XCTAssertEqual(md["test.array_str"]?.stringArray, ["a", "bc", "", "ü"])
        XCTAssertEqual(md["test.array_float"]?.floatArray, [0.5, -2.25])
        XCTAssertEqual(md["general.architecture"]?.string, "llama")
        XCTAssertEqual(md["test.uint8"]?.int, 200)
        XCTAssertNil(md["test.string"]?.int)
    }

    func testEveryTensorTypeDecodesLikeTheGGUFPackage() throws {
        let f = try GGUFFile(path: Goldens.path("formats.gguf"))
        let tensors = Goldens.expected["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(tensors.count, 11)
        for (name, exp) in tensors.sorted(by: { $0.key < $1.key }) {
            let t = try XCTUnwrap(f.tensor(named: name), name)
            XCTAssertEqual("\(t.type)", exp["type"] as? String, name)
            XCTAssertEqual(t.shape, exp["shape"] as? [Int], name)
            XCTAssertEqual(t.offset % f.alignment, 0, name)
            let want = (exp["values"] as! [NSNumber]).map { $0.floatValue }
            let got = try f.dequantize(t)
            XCTAssertEqual(got.count, want.count, name)
            var worst: Float = 0
            for i in 0..<want.count { worst = max(worst, abs(got[i] - want[i]) / max(1, abs(want[i]))) }
            // Both sides compute in fp32 from the same fp16 scales; only summation order may differ.
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(name): max relative error \(worst)")
        }
    }

    func testUnsupportedTypeIsATypedError() throws {
        // Patch t.f32's type id (F32 = 0) to Q2_K (10), which AnchorKV does not decode.
        let f = try GGUFFile(path: Goldens.path("formats.gguf"))
        XCTAssertThrowsError(try f.dequantize(GGUFTensorInfo(name: "x", shape: [256], type: .q2_K, offset: 0, byteCount: 84))) {
            XCTAssertEqual($0 as? ModelFormatError, .unsupportedTensorType(name: "x", type: "Q2_K"))
        }
    }

    func testEveryTruncationIsATypedErrorNeverACrash() throws {
        let full = try Data(contentsOf: URL(fileURLWithPath: Goldens.path("formats.gguf")))
        let f = try GGUFFile(path: Goldens.path("formats.gguf"))
        let headerEnd = f.tensors.map(\.offset).min()!
        // Every cut inside the header and a spread of cuts inside the data.
        var cuts = Array(stride(from: 0, to: headerEnd, by: 1))
        cuts += stride(from: headerEnd, to: full.count, by: 97)
        for cut in cuts {
            let p = try Goldens.mutated("formats.gguf") { $0 = $0.prefix(cut) }
            defer { try? FileManager.default.removeItem(atPath: p) }
            XCTAssertThrowsError(try GGUFFile(path: p), "cut at \(cut)") { err in
                XCTAssertTrue(err is ModelFormatError, "cut at \(cut): \(err)")
                XCTAssertFalse("\(err)".isEmpty)
            }
        }
    }

    func testBadMagicVersionAndAbsurdCounts() throws {
        let magic = try Goldens.mutated("formats.gguf") { $0[0] = UInt8(ascii: "X") }
        XCTAssertThrowsError(try GGUFFile(path: magic)) { XCTAssertEqual($0 as? ModelFormatError, .notGGUF(path: magic)) }
        let version = try Goldens.mutated("formats.gguf") { $0[4] = 9 }
        XCTAssertThrowsError(try GGUFFile(path: version)) {
            XCTAssertEqual($0 as? ModelFormatError, .unsupportedGGUFVersion(path: version, version: 9))
        }
        let counts = try Goldens.mutated("formats.gguf") { d in for i in 8..<16 { d[i] = 0xFF } }
        XCTAssertThrowsError(try GGUFFile(path: counts)) { XCTAssertTrue("\($0)".contains("truncated or corrupt"), "\($0)") }
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) {
            guard case .cannotOpen = $0 as? ModelFormatError else { return XCTFail("\($0)") }
        }
        for p in [magic, version, counts] { try? FileManager.default.removeItem(atPath: p) }
    }

    func testFlippedBytesNeverCrash() throws {
        // Random corruption of the header region must either parse or throw, never trap.
        let full = try Data(contentsOf: URL(fileURLWithPath: Goldens.path("formats.gguf")))
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let p = try Goldens.mutated("formats.gguf") { d in
                for _ in 0..<3 { d[Int.random(in: 0..<min(1200, full.count), using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
            }
            defer { try? FileManager.default.removeItem(atPath: p) }
            if let f = try? GGUFFile(path: p) {
                for t in f.tensors where t.type.isDecodable { _ = try? f.dequantize(t) }
            }
        }
    }
}

/// Hostile but well-formed GGUF directories: every field is in range on its own, only the
/// arithmetic over them (element counts, byte extents) shows that the file lies.
final class GGUFHostileTests: XCTestCase {
    func open(_ tensors: [GGUFBuilder.Tensor], data: [UInt8] = []) throws -> (path: String, result: Result<GGUFFile, Error>) {
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama"))]
        b.tensors = tensors
        b.data = data
        let p = try b.write()
        return (p, Result { try GGUFFile(path: p) })
    }

    func assertInvalid(_ tensors: [GGUFBuilder.Tensor], data: [UInt8] = [], _ phrase: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (p, result) = try open(tensors, data: data)
        defer { try? FileManager.default.removeItem(atPath: p) }
        switch result {
        case .success(let f): XCTFail("opened \(f.tensors)", file: file, line: line)
        case .failure(let e):
            XCTAssertTrue(e is ModelFormatError, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(phrase), "\(e)", file: file, line: line)
        }
    }

    func testTheBuilderMakesFilesTheReaderOpens() throws {
        // 32 F32 elements at offset 0: the control case, so the refusals below are the checks'.
        let (p, result) = try open([.init(name: "t", shape: [8, 4], type: 0)], data: [UInt8](repeating: 0, count: 128))
        defer { try? FileManager.default.removeItem(atPath: p) }
        let f = try result.get()
        XCTAssertEqual(f.tensors.first?.shape, [8, 4])
        XCTAssertEqual(f.tensors.first?.byteCount, 128)
        XCTAssertEqual(try f.dequantize(f.tensors[0]), [Float](repeating: 0, count: 32))
    }

    func testAnElementCountThatOverflowsIsRefused() throws {
        // Each dimension passes the per-dimension limit (2^40); their product (2^80) does not fit.
        try assertInvalid([.init(name: "big", shape: [1 << 40, 1 << 40], type: 0)], "more elements than can be counted")
        // Wrapping to a small count by a zero after the overflow is refused as well.
        try assertInvalid([.init(name: "wrap", shape: [1 << 40, 1 << 40, 1 << 40, 0], type: 0)], "more elements than can be counted")
    }

    func testAByteCountThatOverflowsIsRefused() throws {
        // 2^62 F32 elements count fine, but need 2^64 bytes: wrapped, that was 0 bytes and passed.
        try assertInvalid([.init(name: "f32", shape: [1 << 40, 1 << 22], type: 0)], "needs more bytes than can be counted")
        // Q8_0: 8.8e18 elements still count, but their 2.7e17 blocks of 34 bytes do not.
        try assertInvalid([.init(name: "q8", shape: [1 << 40, 8_000_000], type: 8)], "needs more bytes than can be counted")
    }

    func testAnExtentPastTheEndOfTheMappingIsRefused() throws {
        try assertInvalid([.init(name: "t", shape: [8, 4], type: 0)], data: [UInt8](repeating: 0, count: 127), "truncated")
        try assertInvalid([.init(name: "t", shape: [1 << 20], type: 0, offset: 32)], data: [UInt8](repeating: 0, count: 64), "truncated")
    }
}

final class HalfPrecisionTests: XCTestCase {
    func testFP16AndBF16ConversionsRoundToNearestEven() {
        XCTAssertEqual(akv_f32_to_f16(1.0), 0x3C00)
        XCTAssertEqual(akv_f16_to_f32(0x3C00), 1.0)
        XCTAssertEqual(akv_f16_to_f32(0x7BFF), 65504)
        XCTAssertEqual(akv_f32_to_bf16(1.0), 0x3F80)
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
        XCTAssertEqual(akv_f32_to_bf16(1.00390625), 0x3F80)
        XCTAssertEqual(akv_f32_to_bf16(1.01171875), 0x3F82)
        XCTAssertTrue(akv_bf16_to_f32(akv_f32_to_bf16(.nan)).isNaN)
        var values = (0..<1000).map { Float($0) * 0.37 - 150 }
        values += [0, -0, .infinity, -.infinity, 1e-8, 70000]
        var half = [UInt16](repeating: 0, count: values.count)
        var back = [Float](repeating: 0, count: values.count)
        akv_f32_to_f16_n(values, &half, Int64(values.count))
        akv_f16_to_f32_n(half, &back, Int64(values.count))
        for (i, v) in values.enumerated() {
            XCTAssertEqual(half[i], akv_f32_to_f16(v), "bulk and scalar f16 agree at \(v)")
            if abs(v) < 65504 { XCTAssertLessThanOrEqual(abs(back[i] - v), max(abs(v) * 0.0005, 6e-8), "\(v)") }
        }
    }
}
