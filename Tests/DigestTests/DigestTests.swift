import Digest
import Foundation
import XCTest

final class DigestTests: XCTestCase {
    /// Only the fuzzing build (tools/fuzz/run.sh) may skip checksum comparisons.
    func testChecksumsAreEnforcedInThisBuild() {
        XCTAssertTrue(ChecksumPolicy.enforced)
    }

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Streaming in odd pieces gives the digest of the whole.
        let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        var h = SHA256()
        var i = 0
        while i < million.count { let n = min(777, million.count - i); h.update(million[i..<(i + n)]); i += n }
        XCTAssertEqual(h.finalize().hexString, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testCRC32CKnownVectorsAndChaining() {
        XCTAssertEqual(CRC32C.checksum(Data("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum(Data(repeating: 0, count: 32)), 0x8A91_36AA)
        let data = Data((0..<1000).map { UInt8($0 % 251) })
        let whole = CRC32C.checksum(data)
        let chained = CRC32C.checksum(data[500...], seed: CRC32C.checksum(data[..<500]))
        XCTAssertEqual(whole, chained)
        var flipped = data
        flipped[123] ^= 0x10
        XCTAssertNotEqual(CRC32C.checksum(flipped), whole)
    }
}
