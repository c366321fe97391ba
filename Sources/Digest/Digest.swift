import CChecksum
import Foundation

/// SHA-256 for content hashes (re-ingest detection) and model/adapter fingerprints.
public struct SHA256: Sendable {
    private var ctx = akv_sha256_ctx()

    public init() { akv_sha256_init(&ctx) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        akv_sha256_update(&ctx, base, bytes.count)
    }

    public mutating func update(_ data: Data) { data.withUnsafeBytes { update($0) } }
    public mutating func update(_ string: String) { update(Data(string.utf8)) }

    public mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        akv_sha256_final(&ctx, &out)
        return out
    }

    /// Lower-case hex of the digest of `data`.
    public static func hex(_ data: Data) -> String {
        var h = SHA256()
        h.update(data)
        return h.finalize().hexString
    }
}

/// CRC32C (Castagnoli): per-record checksums, hardware-accelerated on x86-64.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return seed }
        return akv_crc32c(seed, base, bytes.count)
    }

    public static func checksum(_ data: Data, seed: UInt32 = 0) -> UInt32 {
        data.withUnsafeBytes { checksum($0, seed: seed) }
    }
}

extension Array where Element == UInt8 {
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Whether readers compare stored checksums with computed ones. Always true, except in the
/// coverage-guided fuzzing build (tools/fuzz/run.sh defines FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION),
/// where a mutated byte would otherwise fail every checksum and the fuzzer would never reach the
/// semantic checks behind it. An attacker recomputes checksums anyway; this lets the fuzzer do the same.
public enum ChecksumPolicy {
    #if FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    public static let enforced = false
    #else
    public static let enforced = true
    #endif
}
