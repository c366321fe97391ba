import Foundation
import XCTest
@testable import KVStore

final class TensorCodecTests: XCTestCase {
    func record(rows: Int = 17, cols: Int = 192, seed: UInt64 = 3) -> TensorRecord {
        var s = seed
        func next() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 20001) / 5000 - 2 }
        return TensorRecord(positions: (0..<rows).map { Int32($0 * 5 + 3) }, keys: (0..<rows * cols).map { _ in next() },
                            values: (0..<rows * cols).map { _ in next() * 0.1 }, cols: cols)
    }

    func testF16RoundTripIsBitExactForHalfValues() throws {
        var r = record()
        r.keys = r.keys.map { Float(Float16($0)) }
        r.values = r.values.map { Float(Float16($0)) }
        for policy in CompressionPolicy.allCases {
            let bytes = TensorCodec.encode(r, dtype: .f16, compression: policy)
            XCTAssertEqual(try bytes.withUnsafeBytes { try TensorCodec.decode($0) }, r, "policy \(policy)")
        }
    }

    func testF16AndBF16RoundToNearest() throws {
        let r = record()
        let f16 = try TensorCodec.encode(r, dtype: .f16).withUnsafeBytes { try TensorCodec.decode($0) }
        XCTAssertEqual(f16.keys, r.keys.map { Float(Float16($0)) })
        let bf16 = try TensorCodec.encode(r, dtype: .bf16).withUnsafeBytes { try TensorCodec.decode($0) }
        for (a, b) in zip(bf16.keys, r.keys) { XCTAssertLessThanOrEqual(abs(a - b), abs(b) / 256 + 1e-30) }
    }

    func testInt8StaysWithinHalfAScalePerChannel() throws {
        let r = record()
        let back = try TensorCodec.encode(r, dtype: .int8).withUnsafeBytes { try TensorCodec.decode($0) }
        XCTAssertEqual(back.positions, r.positions)
        for (m, b) in [(r.keys, back.keys), (r.values, back.values)] {
            for c in 0..<r.cols {
                let scale = (0..<r.rows).map { abs(m[$0 * r.cols + c]) }.max()! / 127
                for row in 0..<r.rows {
                    XCTAssertLessThanOrEqual(abs(b[row * r.cols + c] - m[row * r.cols + c]), scale / 2 * 1.0001 + 1e-7)
                }
            }
        }
    }

    func testCorruptionIsDetected() {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        for offset in [0, 5, 9, 30, bytes.count / 2, bytes.count - 1] {
            var bad = bytes
            bad[offset] ^= 0x04
            XCTAssertThrowsError(try bad.withUnsafeBytes { try TensorCodec.decode($0) }, "flip at \(offset)")
        }
        XCTAssertThrowsError(try Array(bytes.dropLast(3)).withUnsafeBytes { try TensorCodec.decode($0) })
        XCTAssertThrowsError(try [UInt8]().withUnsafeBytes { try TensorCodec.decode($0) })
    }

    func testShufflePlanesRoundTrip() {
        var b = (0..<103).map { UInt8($0 * 7 % 256) }
        let original = b
        TensorCodec.shuffle(&b, from: 3, elementSize: 2)
        XCTAssertNotEqual(b, original)
        TensorCodec.unshuffle(&b, from: 3, elementSize: 2)
        XCTAssertEqual(b, original)
    }
}
