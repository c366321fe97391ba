import Foundation
import XCTest
@testable import ModelFormats

final class SafetensorsTests: XCTestCase {
    func testReadsF32F16BF16AndMetadata() throws {
        let f = try SafetensorsFile(path: Goldens.path("tensors.safetensors"))
        XCTAssertEqual(f.metadata, ["format": "pt", "note": "golden"])
        let exp = Goldens.expected["safetensors"] as! [String: [String: Any]]
        XCTAssertEqual(Set(f.tensors.keys), Set(exp.keys))
        for (name, e) in exp {
            XCTAssertEqual(f.tensors[name]?.shape, e["shape"] as? [Int])
            XCTAssertEqual(try f.floats(name), (e["values"] as! [NSNumber]).map(\.floatValue), name)
        }
        XCTAssertEqual(f.tensors["w.bf16"]?.dtype, .bf16)
        XCTAssertEqual(f.tensors["w.f16"]?.dtype, .f16)
    }

    func testTruncatedAndMalformedFilesAreTypedErrors() throws {
        let full = try Data(contentsOf: URL(fileURLWithPath: Goldens.path("tensors.safetensors")))
        for cut in 0..<full.count {
            let p = try Goldens.mutated("tensors.safetensors") { $0 = $0.prefix(cut) }
            defer { try? FileManager.default.removeItem(atPath: p) }
            XCTAssertThrowsError(try SafetensorsFile(path: p), "cut at \(cut)") { XCTAssertTrue($0 is ModelFormatError, "\($0)") }
        }
        let garbage = try Goldens.mutated("tensors.safetensors") { d in d[10] = UInt8(ascii: "#") }
        XCTAssertThrowsError(try SafetensorsFile(path: garbage)) { XCTAssertTrue("\($0)".contains("not a valid safetensors"), "\($0)") }
    }

    /// A well-formed file that lies: sizes checked against each other and the file, with every
    /// product overflow-checked.
    func testHostileClaimsAreRefused() throws {
        func file(_ header: String, data: Int = 0) throws -> String {
            var d = Data()
            withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
            d.append(Data(header.utf8))
            d.append(Data(count: data))
            let p = FileManager.default.temporaryDirectory.appendingPathComponent("akv-st-\(UUID().uuidString).safetensors").path
            try d.write(to: URL(fileURLWithPath: p))
            return p
        }
        func refusal(_ header: String, data: Int = 0) throws -> String {
            let p = try file(header, data: data)
            defer { try? FileManager.default.removeItem(atPath: p) }
            do { _ = try SafetensorsFile(path: p); return "accepted" } catch { return "\(error)" }
        }
        // 2^39 x 2^23 F32 elements: 2^64 bytes, which wraps to 0 = the empty range it claims.
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[549755813888,8388608],"data_offsets":[0,0]}}"#).contains("overflows"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F64","shape":[1099511627775,1099511627775],"data_offsets":[0,0]}}"#).contains("overflows"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,7.5]}}"#, data: 8).contains("invalid data_offsets"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: 8).contains("invalid shape"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,1e30]}}"#, data: 8).contains("invalid data_offsets"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: 8).contains("data of tensor 't'"))
        XCTAssertTrue(try refusal(#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8).contains("needs 12"))
        XCTAssertEqual(try refusal(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 8), "accepted", "the honest file reads")
    }

    func testWriterRoundTripIsAtomicAndExact() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a: [Float] = (0..<12).map { Float($0) / 3 }
        let path = dir.appendingPathComponent("model.safetensors").path
        try SafetensorsWriter.write([
            .init(name: "a", shape: [3, 4], floats: a),
            .init(name: "b", shape: [12], floats: a, as: .bf16),
            .init(name: "c", shape: [2, 6], floats: a, as: .f16),
        ], metadata: ["ratio": "5"], to: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.safetensors"])
        let m = try SafetensorsModel(directory: dir.path)
        XCTAssertEqual(m.tensorNames, ["a", "b", "c"])
        XCTAssertEqual(try m.floats("a"), a)
        for (x, y) in zip(try m.floats("b"), a) { XCTAssertEqual(x, y, accuracy: abs(y) / 128) }
        for (x, y) in zip(try m.floats("c"), a) { XCTAssertEqual(x, y, accuracy: abs(y) / 1024) }
        XCTAssertEqual(try SafetensorsFile(path: path).metadata, ["ratio": "5"])
        XCTAssertThrowsError(try m.floats("missing")) { XCTAssertEqual($0 as? ModelFormatError, .missingTensor(name: "missing")) }
    }
}
