/// A RESP2 value (the Redis serialization protocol a cluster speaks): replies are decoded into
/// these, commands are sent as arrays of bulk strings.
public enum RESPValue: Equatable, Sendable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    /// nil: the null bulk string ($-1).
    case bulkString([UInt8]?)
    /// nil: the null array (*-1).
    case array([RESPValue]?)

    /// The error's first word (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, ...), for errors.
    public var errorCode: Substring? {
        guard case .error(let m) = self else { return nil }
        return m.split(separator: " ", maxSplits: 1).first
    }
}

/// Encodes a command as RESP: an array of bulk strings.
public enum RESPEncoder {
    public static func command(_ parts: [[UInt8]], into out: inout [UInt8]) {
        out += Array("*\(parts.count)\r\n".utf8)
        for p in parts {
            out += Array("$\(p.count)\r\n".utf8)
            out += p
            out += [13, 10]
        }
    }

    public static func command(_ parts: [String]) -> [UInt8] {
        var out: [UInt8] = []
        command(parts.map { Array($0.utf8) }, into: &out)
        return out
    }
}

/// An incremental RESP2 parser with bounds: replies arrive in pieces, and a server (or whatever
/// answers on its port) is not trusted to send sane lengths or depths.
public struct RESPDecoder: Sendable {
    public struct Limits: Sendable {
        /// Largest bulk string (AnchorKV's values are at most 8 MiB; Redis's own cap is 512 MB).
        public var maxBulkBytes = 64 << 20
        public var maxArrayElements = 1 << 20
        public var maxDepth = 8
        /// Longest simple string, error or integer line.
        public var maxLineBytes = 64 << 10
        public init() {}
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case tooLarge(String)
        public var description: String {
            switch self {
            case .malformed(let m): return "malformed RESP reply: \(m)"
            case .tooLarge(let m): return "RESP reply over the limit: \(m)"
            }
        }
    }

    public let limits: Limits
    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Decodes one value from the start of `bytes` (an array, a slice, a NIO buffer's view): the
    /// value and the bytes it took, or nil when more bytes are needed. Nothing is copied until a
    /// value is complete, so a large reply arriving in pieces costs one scan of its headers.
    public func decode<Bytes: RandomAccessCollection>(_ bytes: Bytes) throws(Failure) -> (value: RESPValue, consumed: Int)?
        where Bytes.Element == UInt8, Bytes.Index == Int {
        var i = bytes.startIndex
        guard let v = try value(bytes, &i, depth: 0) else { return nil }
        return (v, i - bytes.startIndex)
    }

    private func line<Bytes: RandomAccessCollection>(_ b: Bytes, _ i: inout Int) throws(Failure) -> Bytes.SubSequence?
        where Bytes.Element == UInt8, Bytes.Index == Int {
        var j = i
        while j < b.endIndex {
            if b[j] == 13 {
                guard j + 1 < b.endIndex else { return nil }
                guard b[j + 1] == 10 else { throw .malformed("CR without LF") }
                let l = b[i..<j]
                i = j + 2
                return l
            }
            if j - i >= limits.maxLineBytes { throw .tooLarge("a line of more than \(limits.maxLineBytes) bytes") }
            j += 1
        }
        if j - i > limits.maxLineBytes { throw .tooLarge("a line of more than \(limits.maxLineBytes) bytes") }
        return nil
    }

    private func integer<Line: Collection>(_ l: Line) throws(Failure) -> Int64 where Line.Element == UInt8 {
        guard !l.isEmpty, l.count <= 20, let n = Int64(String(decoding: l, as: UTF8.self)) else {
            throw .malformed("'\(String(decoding: l.prefix(32), as: UTF8.self))' is not an integer")
        }
        return n
    }

    private func value<Bytes: RandomAccessCollection>(_ b: Bytes, _ i: inout Int, depth: Int) throws(Failure) -> RESPValue?
        where Bytes.Element == UInt8, Bytes.Index == Int {
        guard i < b.endIndex else { return nil }
        let type = b[i]
        var j = i + 1
        guard let l = try line(b, &j) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            i = j
            return .simpleString(String(decoding: l, as: UTF8.self))
        case UInt8(ascii: "-"):
            i = j
            return .error(String(decoding: l, as: UTF8.self))
        case UInt8(ascii: ":"):
            let n = try integer(l)
            i = j
            return .integer(n)
        case UInt8(ascii: "$"):
            let n = try integer(l)
            if n == -1 { i = j; return .bulkString(nil) }
            guard n >= 0 else { throw .malformed("bulk length \(n)") }
            guard n <= limits.maxBulkBytes else { throw .tooLarge("a bulk string of \(n) bytes (limit \(limits.maxBulkBytes))") }
            let end = j + Int(n)
            guard end + 2 <= b.endIndex else { return nil }
            guard b[end] == 13, b[end + 1] == 10 else { throw .malformed("bulk string not ended by CRLF") }
            i = end + 2
            return .bulkString(Array(b[j..<end]))
        case UInt8(ascii: "*"):
            let n = try integer(l)
            if n == -1 { i = j; return .array(nil) }
            guard n >= 0 else { throw .malformed("array length \(n)") }
            guard n <= limits.maxArrayElements else { throw .tooLarge("an array of \(n) elements (limit \(limits.maxArrayElements))") }
            guard depth < limits.maxDepth else { throw .tooLarge("arrays nested deeper than \(limits.maxDepth)") }
            var items: [RESPValue] = []
            // Reserve by what is there, not by what the header claims.
            items.reserveCapacity(min(Int(n), (b.endIndex - j) / 3))
            for _ in 0..<n {
                guard let v = try value(b, &j, depth: depth + 1) else { return nil }
                items.append(v)
            }
            i = j
            return .array(items)
        default:
            throw .malformed("unknown type byte 0x\(String(type, radix: 16))")
        }
    }
}
