import Digest
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

    // MARK: hostile but well-formed records (checksum recomputed: only the checks can stop them)

    /// A record with header fields replaced (rows, cols, raw size, stored size as u32 at 8, 12,
    /// 16, 20; flags at 6) and its CRC32C recomputed.
    static func forged(_ record: [UInt8], _ fields: [Int: UInt32] = [:], flags: UInt8? = nil, payload: [UInt8]? = nil) -> [UInt8] {
        var b = Array(record.prefix(28)) + (payload ?? Array(record.dropFirst(28)))
        for (at, v) in fields { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { b[at + i] = $0[i] } } }
        if let flags { b[6] = flags }
        let crc = CRC32C.checksum(b[28...].withUnsafeBytes { $0 }, seed: b[0..<24].withUnsafeBytes { CRC32C.checksum($0) })
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { b[24 + i] = $0[i] } }
        return b
    }

    func assertRefused(_ bytes: [UInt8], expect: TensorCodec.Shape? = nil, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        for (what, call) in [("decode", { _ = try bytes.withUnsafeBytes { try TensorCodec.decode($0, expect: expect) } }),
                             ("verify", { try bytes.withUnsafeBytes { try TensorCodec.verify($0, expect: expect) } }),
                             ("positions", { _ = try bytes.withUnsafeBytes { try TensorCodec.positions($0, expect: expect) } })] {
            XCTAssertThrowsError(try call(), what, file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(phrase), "\(what): \(e)", file: file, line: line)
            }
        }
    }

    func testTheForgeKeepsAnHonestRecordValid() throws {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        let again = Self.forged(bytes)
        XCTAssertEqual(again, bytes)
        XCTAssertEqual(try again.withUnsafeBytes { try TensorCodec.decode($0, expect: .init(rows: 17, cols: 192)) }, try bytes.withUnsafeBytes { try TensorCodec.decode($0) })
        XCTAssertEqual(try again.withUnsafeBytes { try TensorCodec.positions($0) }, record().positions)
        let lz4 = TensorCodec.encode(record(), dtype: .f16, compression: .shuffleLZ4)
        XCTAssertEqual(try lz4.withUnsafeBytes { try TensorCodec.positions($0, expect: .init(rows: 17, cols: 192)) }, record().positions)
    }

    func testAShapeWhoseSizeOverflowsIsRefused() {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        // 2^32-1 x 2^32-1 elements: the old arithmetic wrapped; any raw size then "matched".
        assertRefused(Self.forged(bytes, [8: .max, 12: .max]), "too large for a record")
        // In range for Int, past what a u32 size field holds.
        assertRefused(Self.forged(bytes, [8: 1 << 16, 12: 1 << 16]), "too large for a record")
        XCTAssertNil(TensorCodec.payloadSize(rows: Int(UInt32.max), cols: Int(UInt32.max), dtype: .int8))
        XCTAssertEqual(TensorCodec.payloadSize(rows: 17, cols: 192, dtype: .f16), 17 * 4 + 2 * 17 * 192 * 2)
        XCTAssertEqual(TensorCodec.payloadSize(rows: 17, cols: 192, dtype: .int8), 17 * 4 + 2 * (17 * 192 + 192 * 4))
    }

    func testARawSizeTheShapeDoesNotImplyIsRefused() {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        assertRefused(Self.forged(bytes, [16: UInt32(bytes.count - 28 + 2)]), "needs")
        let lz4 = TensorCodec.encode(record(), dtype: .f16, compression: .lz4)
        XCTAssertEqual(lz4[6] & 1, 1, "the record is LZ4")
        assertRefused(Self.forged(lz4, [16: 100_000_000]), "needs")
    }

    func testASmallLZ4RecordCannotClaimAHugePayload() {
        // 4000 x 64000 fp16 is a consistent shape (~1 GB raw), claimed by a few dozen LZ4 bytes:
        // refused from the header alone, before a byte is allocated for it.
        var r = record(rows: 4, cols: 8)
        r.keys = [Float](repeating: 0, count: 32); r.values = r.keys
        let lz4 = TensorCodec.encode(r, dtype: .f16, compression: .lz4)
        XCTAssertEqual(lz4[6] & 1, 1)
        let raw = UInt32(TensorCodec.payloadSize(rows: 4000, cols: 64000, dtype: .f16)!)
        assertRefused(Self.forged(lz4, [8: 4000, 12: 64000, 16: raw]), "cannot decompress to")
        // Within LZ4's reach (<= 255x) but not the shape the caller needs: refused by the shape.
        let near = TensorCodec.payloadSize(rows: 4, cols: 64, dtype: .f16)!
        XCTAssertLessThanOrEqual(near, (lz4.count - 28) * 255)
        assertRefused(Self.forged(lz4, [12: 64, 16: UInt32(near)]), expect: .init(rows: 4, cols: 8), "the model and the window need 4x8")
    }

    func testTheExpectedShapeIsEnforced() {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        assertRefused(bytes, expect: .init(rows: 17, cols: 576), "record is 17x192")
        assertRefused(bytes, expect: .init(rows: 16, cols: 192), "record is 17x192")
        XCTAssertNoThrow(try bytes.withUnsafeBytes { try TensorCodec.verify($0, expect: .init(rows: 17, cols: 192)) })
    }

    func testUnknownFlagsAndAShuffledInt8RecordAreRefused() {
        let bytes = TensorCodec.encode(record(), dtype: .f16, compression: .none)
        assertRefused(Self.forged(bytes, flags: 4), "unknown flags")
        let int8 = TensorCodec.encode(record(), dtype: .int8, compression: .none)
        assertRefused(Self.forged(int8, flags: 2), "shuffle of 1-byte")
        // A raw record's stored size must equal its raw size.
        assertRefused(Self.forged(bytes, [20: UInt32(bytes.count - 28 - 4)], payload: Array(bytes.dropFirst(28).dropLast(4))), "raw payload is")
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
