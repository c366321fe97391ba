import CKernels
import CLZ4
import Digest
import Foundation

/// Element type of stored anchor K/V.
public enum TensorDType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE half: bit-exact round trip of fp16 values (default).
    case f16 = 0
    case bf16 = 1
    /// int8 with one fp32 scale per channel (column): |error| <= scale / 2 = max|column| / 254.
    case int8 = 2

    public var description: String { ["f16", "bf16", "int8"][Int(rawValue)] }
    public init?(name: String) {
        guard let t = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = t
    }
}

/// When to LZ4 a record's payload.
public enum CompressionPolicy: String, Sendable, CaseIterable {
    case none
    /// LZ4 over the raw bytes.
    case lz4
    /// Byte-plane shuffle (all first bytes, then all second bytes of each element), then LZ4:
    /// exponent bytes of fp16 are far more repetitive than mantissa bytes.
    case shuffleLZ4 = "shuffle-lz4"
    /// shuffle-lz4 where it saves at least 5%, else raw.
    case auto
}

/// One layer of one window: the anchors' positions, keys (before RoPE) and values, each [rows, cols].
public struct TensorRecord: Sendable, Equatable {
    public var positions: [Int32]
    public var keys: [Float]
    public var values: [Float]
    public var cols: Int
    public var rows: Int { positions.count }

    public init(positions: [Int32], keys: [Float], values: [Float], cols: Int) {
        self.positions = positions
        self.keys = keys
        self.values = values
        self.cols = cols
    }
}

/// Binary tensor record: a 28-byte header (magic "AKVT", version, dtype, flags, rows, cols,
/// raw and stored payload sizes, CRC32C over header and stored payload), then the payload:
/// positions (int32), then K and V (fp16/bf16 elements, or per-column fp32 scales + int8).
public enum TensorCodec {
    static let magic: [UInt8] = Array("AKVT".utf8)
    static let version: UInt8 = 1
    static let headerSize = 28
    static let flagLZ4: UInt8 = 1, flagShuffled: UInt8 = 2

    public static func encode(_ r: TensorRecord, dtype: TensorDType, compression: CompressionPolicy = .auto) -> [UInt8] {
        precondition(r.keys.count == r.rows * r.cols && r.values.count == r.rows * r.cols)
        var payload = [UInt8]()
        payload.reserveCapacity(r.rows * 4 + 2 * r.rows * r.cols * 2 + 2 * r.cols * 4)
        r.positions.withUnsafeBytes { payload += $0 }
        let tensorStart = payload.count
        for m in [r.keys, r.values] { appendMatrix(m, rows: r.rows, cols: r.cols, dtype: dtype, to: &payload) }
        let elementSize = dtype == .int8 ? 1 : 2

        var flags: UInt8 = 0
        var stored = payload
        if compression != .none {
            var candidate = payload
            if compression != .lz4 && elementSize == 2 {
                shuffle(&candidate, from: tensorStart, elementSize: 2)
                flags |= flagShuffled
            }
            if let packed = lz4(candidate), compression != .auto || packed.count <= payload.count * 95 / 100 {
                stored = packed
                flags |= flagLZ4
            } else {
                flags = 0
            }
        }
        var out = magic + [version, dtype.rawValue, flags, 0]
        for v in [UInt32(r.rows), UInt32(r.cols), UInt32(payload.count), UInt32(stored.count)] { append(v, to: &out) }
        let crc = CRC32C.checksum(stored.withUnsafeBytes { $0 }, seed: out.withUnsafeBytes { CRC32C.checksum($0) })
        append(crc, to: &out)
        return out + stored
    }

    /// The shape a reader expects a record to have: the anchors of its window (rows) and the
    /// model's kv_dim (cols). A record claiming anything else is refused before any allocation.
    public struct Shape: Sendable, Equatable, CustomStringConvertible {
        public var rows: Int
        public var cols: Int
        public init(rows: Int, cols: Int) { self.rows = rows; self.cols = cols }
        public var description: String { "\(rows)x\(cols)" }
    }

    /// What a record's header claims, once every claim has been checked against the others.
    public struct Header: Sendable, Equatable {
        public let dtype: TensorDType
        public let flags: UInt8
        public let rows: Int
        public let cols: Int
        /// Payload bytes after decompression: exactly what rows x cols of dtype take.
        public let rawSize: Int
        /// Payload bytes as stored (after the header).
        public let storedSize: Int
        public var shape: Shape { Shape(rows: rows, cols: cols) }
        public var isLZ4: Bool { flags & TensorCodec.flagLZ4 != 0 }
    }

    /// LZ4's block format cannot expand n input bytes to more than 255 n output bytes (a match
    /// costs at least one byte per 255 bytes it copies), so a larger raw size is a lie.
    static let maxLZ4Expansion = 255

    /// The one place a record's claims are checked, before anything is allocated or indexed:
    /// magic, version, dtype, flags, the raw size against rows x cols of the dtype (arithmetic
    /// checked for overflow), the stored size against the bytes at hand, for LZ4 a raw size
    /// that the stored bytes can decompress to, the CRC32C, and (when given) the shape the
    /// caller expects.
    public static func header(_ bytes: UnsafeRawBufferPointer, expect: Shape? = nil) throws -> Header {
        guard bytes.count >= headerSize, Array(bytes[0..<4]) == magic else { throw CodecError("not a tensor record") }
        guard bytes[4] == version else { throw CodecError("record version \(bytes[4]) is not supported") }
        guard let dtype = TensorDType(rawValue: bytes[5]) else { throw CodecError("unknown dtype \(bytes[5])") }
        let flags = bytes[6]
        guard flags & ~(flagLZ4 | flagShuffled) == 0, bytes[7] == 0 else { throw CodecError("unknown flags \(flags)/\(bytes[7])") }
        let elementSize = dtype == .int8 ? 1 : 2
        guard flags & flagShuffled == 0 || elementSize == 2 else { throw CodecError("byte-plane shuffle of 1-byte \(dtype) elements") }
        let rows = Int(read32(bytes, 8)), cols = Int(read32(bytes, 12))
        let rawSize = Int(read32(bytes, 16)), storedSize = Int(read32(bytes, 20)), crc = read32(bytes, 24)
        guard let expected = payloadSize(rows: rows, cols: cols, dtype: dtype) else {
            throw CodecError("shape \(rows)x\(cols) \(dtype) is too large for a record")
        }
        guard rawSize == expected else { throw CodecError("payload is \(rawSize) bytes, \(rows)x\(cols) \(dtype) needs \(expected)") }
        guard bytes.count == headerSize + storedSize else { throw CodecError("record is \(bytes.count) bytes, header says \(headerSize + storedSize)") }
        if flags & flagLZ4 != 0 {
            guard storedSize > 0, rawSize <= Int(Int32.max), rawSize <= storedSize * maxLZ4Expansion else {
                throw CodecError("LZ4 payload of \(storedSize) bytes cannot decompress to the \(rawSize) bytes its header claims")
            }
        } else {
            guard storedSize == rawSize else { throw CodecError("raw payload is \(storedSize) bytes, \(rows)x\(cols) \(dtype) needs \(rawSize)") }
        }
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[headerSize...]), seed: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<24])))
        guard actual == crc || !ChecksumPolicy.enforced else { throw CodecError(String(format: "checksum mismatch (stored %08x, computed %08x)", crc, actual)) }
        if let expect, expect != Shape(rows: rows, cols: cols) {
            throw CodecError("record is \(rows)x\(cols) (anchors x kv_dim), the model and the window need \(expect)")
        }
        return Header(dtype: dtype, flags: flags, rows: rows, cols: cols, rawSize: rawSize, storedSize: storedSize)
    }

    /// Bytes of a payload of rows x cols: positions, K and V (and int8's per-column scales);
    /// nil when the arithmetic overflows or passes what a u32 size field can hold.
    public static func payloadSize(rows: Int, cols: Int, dtype: TensorDType) -> Int? {
        let limit = Int(UInt32.max)
        guard (0...limit).contains(rows), (0...limit).contains(cols) else { return nil }
        let elementSize = dtype == .int8 ? 1 : 2
        let (cells, o1) = rows.multipliedReportingOverflow(by: cols)
        let (matrix, o2) = cells.multipliedReportingOverflow(by: elementSize)
        let (scaled, o3) = matrix.addingReportingOverflow(dtype == .int8 ? cols * 4 : 0)
        let (both, o4) = scaled.multipliedReportingOverflow(by: 2)
        let (total, o5) = both.addingReportingOverflow(rows * 4)
        guard !(o1 || o2 || o3 || o4 || o5), total <= limit else { return nil }
        return total
    }

    /// Checks a record's header, sizes and checksum (and its shape, when given) without decoding its elements.
    public static func verify(_ bytes: UnsafeRawBufferPointer, expect: Shape? = nil) throws {
        _ = try header(bytes, expect: expect)
    }

    /// Checks a record's header (as `header` does) and returns the anchors' positions, reading
    /// no more than them: of an LZ4 payload only their bytes are decompressed (its K and V are
    /// checked when the record is decoded), so this allocates 4 bytes per row whatever it claims.
    public static func positions(_ bytes: UnsafeRawBufferPointer, expect: Shape? = nil) throws -> [Int32] {
        let h = try header(bytes, expect: expect)
        let n = h.rows * 4
        var head = [UInt8](repeating: 0, count: n)
        let stored = UnsafeRawBufferPointer(rebasing: bytes[headerSize...])
        if n > 0 && h.isLZ4 {
            let got = head.withUnsafeMutableBytes { dst in
                LZ4_decompress_safe_partial(stored.baseAddress!.assumingMemoryBound(to: CChar.self), dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                                            Int32(h.storedSize), Int32(n), Int32(n))
            }
            guard Int(got) == n else { throw CodecError("LZ4 payload does not hold the record's \(n) bytes of positions") }
        } else if n > 0 {
            head.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: stored[0..<n])) }
        }
        return head.withUnsafeBytes { raw in (0..<h.rows).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) } }
    }

    /// Decodes a record after checking it (see `header`); `expect` is the shape the caller needs.
    public static func decode(_ bytes: UnsafeRawBufferPointer, expect: Shape? = nil) throws -> TensorRecord {
        let h = try header(bytes, expect: expect)
        let rows = h.rows, cols = h.cols
        let payload = try self.payload(bytes, h)
        var positions = [Int32](repeating: 0, count: rows)
        payload.withUnsafeBytes { raw in positions.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<(rows * 4)])) } }
        var offset = rows * 4
        let keys = readMatrix(payload, &offset, rows: rows, cols: cols, dtype: h.dtype)
        let values = readMatrix(payload, &offset, rows: rows, cols: cols, dtype: h.dtype)
        return TensorRecord(positions: positions, keys: keys, values: values, cols: cols)
    }

    /// The raw payload of a checked record: decompressed, byte planes put back.
    private static func payload(_ bytes: UnsafeRawBufferPointer, _ h: Header) throws -> [UInt8] {
        let stored = UnsafeRawBufferPointer(rebasing: bytes[headerSize...])
        var payload: [UInt8]
        if h.isLZ4 {
            payload = [UInt8](repeating: 0, count: h.rawSize)
            let n = payload.withUnsafeMutableBytes { dst in
                LZ4_decompress_safe(stored.baseAddress!.assumingMemoryBound(to: CChar.self), dst.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    Int32(h.storedSize), Int32(h.rawSize))
            }
            guard Int(n) == h.rawSize else { throw CodecError("LZ4 payload does not decompress to \(h.rawSize) bytes") }
        } else {
            payload = [UInt8](stored)
        }
        if h.flags & flagShuffled != 0 { unshuffle(&payload, from: h.rows * 4, elementSize: 2) }
        return payload
    }

    public struct CodecError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    // MARK: element encodings

    private static func appendMatrix(_ m: [Float], rows: Int, cols: Int, dtype: TensorDType, to out: inout [UInt8]) {
        switch dtype {
        case .f16, .bf16:
            var half = [UInt16](repeating: 0, count: m.count)
            if dtype == .f16 { akv_f32_to_f16_n(m, &half, Int64(m.count)) } else { akv_f32_to_bf16_n(m, &half, Int64(m.count)) }
            half.withUnsafeBytes { out += $0 }
        case .int8:
            var scales = [Float](repeating: 0, count: cols)
            for r in 0..<rows { for c in 0..<cols { scales[c] = max(scales[c], abs(m[r * cols + c])) } }
            for c in 0..<cols { scales[c] = scales[c] > 0 ? scales[c] / 127 : 1 }
            scales.withUnsafeBytes { out += $0 }
            var q = [Int8](repeating: 0, count: m.count)
            for r in 0..<rows { for c in 0..<cols { q[r * cols + c] = Int8(max(-127, min(127, (m[r * cols + c] / scales[c]).rounded()))) } }
            q.withUnsafeBytes { out += $0 }
        }
    }

    private static func readMatrix(_ p: [UInt8], _ offset: inout Int, rows: Int, cols: Int, dtype: TensorDType) -> [Float] {
        let n = rows * cols
        var out = [Float](repeating: 0, count: n)
        p.withUnsafeBytes { raw in
            switch dtype {
            case .f16, .bf16:
                var half = [UInt16](repeating: 0, count: n)
                half.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + 2 * n)])) }
                if dtype == .f16 { akv_f16_to_f32_n(half, &out, Int64(n)) } else { akv_bf16_to_f32_n(half, &out, Int64(n)) }
                offset += 2 * n
            case .int8:
                var scales = [Float](repeating: 0, count: cols)
                scales.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + 4 * cols)])) }
                offset += 4 * cols
                for i in 0..<n { out[i] = Float(Int8(bitPattern: raw[offset + i])) * scales[i % cols] }
                offset += n
            }
        }
        return out
    }

    // MARK: byte planes and LZ4

    static func shuffle(_ b: inout [UInt8], from start: Int, elementSize: Int) {
        let n = (b.count - start) / elementSize
        var planes = [UInt8](repeating: 0, count: n * elementSize)
        for i in 0..<n { for j in 0..<elementSize { planes[j * n + i] = b[start + i * elementSize + j] } }
        b.replaceSubrange(start..<(start + n * elementSize), with: planes)
    }

    static func unshuffle(_ b: inout [UInt8], from start: Int, elementSize: Int) {
        let n = (b.count - start) / elementSize
        var elems = [UInt8](repeating: 0, count: n * elementSize)
        for i in 0..<n { for j in 0..<elementSize { elems[i * elementSize + j] = b[start + j * n + i] } }
        b.replaceSubrange(start..<(start + n * elementSize), with: elems)
    }

    static func lz4(_ src: [UInt8]) -> [UInt8]? {
        let bound = Int(LZ4_compressBound(Int32(src.count)))
        var dst = [UInt8](repeating: 0, count: bound)
        let n = src.withUnsafeBytes { s in
            dst.withUnsafeMutableBytes { d in
                LZ4_compress_default(s.baseAddress!.assumingMemoryBound(to: CChar.self), d.baseAddress!.assumingMemoryBound(to: CChar.self),
                                     Int32(src.count), Int32(bound))
            }
        }
        guard n > 0 else { return nil }
        return Array(dst[0..<Int(n)])
    }

    private static func append(_ v: UInt32, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }

    private static func read32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }
}
