import CLZ4
import COpenBLAS
import CRocksDB
import XCTest

/// Proves the three system libraries link and answer: a failure here means setup is incomplete.
final class SystemLibrariesTests: XCTestCase {
    func testLZ4RoundTrip() {
        let input = [UInt8](repeating: 7, count: 4096)
        var compressed = [UInt8](repeating: 0, count: Int(LZ4_compressBound(Int32(input.count))))
        let n = input.withUnsafeBufferPointer { src in
            compressed.withUnsafeMutableBufferPointer { dst in
                LZ4_compress_default(
                    UnsafeRawPointer(src.baseAddress!).assumingMemoryBound(to: CChar.self),
                    UnsafeMutableRawPointer(dst.baseAddress!).assumingMemoryBound(to: CChar.self),
                    Int32(input.count), Int32(dst.count))
            }
        }
        XCTAssertGreaterThan(n, 0)
        XCTAssertLessThan(Int(n), input.count / 10)
    }

    func testOpenBLASDot() {
        let x: [Float] = [1, 2, 3]
        let y: [Float] = [4, 5, 6]
        XCTAssertEqual(cblas_sdot(3, x, 1, y, 1), 32)
    }

    func testRocksDBOptions() {
        let options = rocksdb_options_create()
        XCTAssertNotNil(options)
        rocksdb_options_destroy(options)
    }
}
