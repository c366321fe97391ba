import CKernels

/// ggml tensor types as stored in GGUF (raw values are ggml's ids).
public enum GGMLType: UInt32, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35

    public var description: String { Self.names[self] ?? "type \(rawValue)" }
    private static let names: [GGMLType: String] = [
        .f32: "F32", .f16: "F16", .q4_0: "Q4_0", .q4_1: "Q4_1", .q5_0: "Q5_0", .q5_1: "Q5_1", .q8_0: "Q8_0",
        .q8_1: "Q8_1", .q2_K: "Q2_K", .q3_K: "Q3_K", .q4_K: "Q4_K", .q5_K: "Q5_K", .q6_K: "Q6_K", .q8_K: "Q8_K",
        .i8: "I8", .i16: "I16", .i32: "I32", .i64: "I64", .f64: "F64", .bf16: "BF16",
    ]

    /// Whether the CKernels decoder handles this type.
    public var isDecodable: Bool { akv_type_supported(rawValue) == 1 }
    /// (elements, bytes) per block, nil when the layout is unknown to AnchorKV.
    public var blockLayout: (elements: Int, bytes: Int)? {
        let e = akv_type_block_elems(rawValue), b = akv_type_block_bytes(rawValue)
        if e > 0 && b > 0 { return (Int(e), Int(b)) }
        switch self {
        case .i8: return (1, 1)
        case .i16: return (1, 2)
        case .i32: return (1, 4)
        case .i64, .f64: return (1, 8)
        default: return nil
        }
    }
}

/// One GGUF metadata value.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? {
        switch self {
        case .bool(let b): return b
        default: return int.map { $0 != 0 }
        }
    }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var stringArray: [String]? {
        guard let a = array else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a { guard let s = v.string else { return nil }; out.append(s) }
        return out
    }
    public var intArray: [Int]? {
        guard let a = array else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for v in a { guard let i = v.int else { return nil }; out.append(i) }
        return out
    }
    public var floatArray: [Float]? {
        guard let a = array else { return nil }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for v in a { guard let d = v.double else { return nil }; out.append(Float(d)) }
        return out
    }
}

/// A tensor's directory entry. `shape` is ggml order: ne0 (the contiguous dimension) first.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the data in the file.
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A GGUF file (v2/v3), memory-mapped. Every offset and size is validated at open, so
/// reading a tensor afterwards cannot run past the mapping.
public final class GGUFFile: Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let byName: [String: Int]
    private let file: MappedFile

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        var r = ByteReader(file.bytes, path: path)
        guard file.bytes.count >= 4, try r.read(UInt32.self, "magic") == 0x4655_4747 else { throw ModelFormatError.notGGUF(path: path) }
        version = try r.read(UInt32.self, "version")
        guard version == 2 || version == 3 else { throw ModelFormatError.unsupportedGGUFVersion(path: path, version: version) }
        let tensorCount = try r.read(UInt64.self, "tensor count")
        let kvCount = try r.read(UInt64.self, "metadata count")
        // Every entry takes at least 8 bytes, which bounds absurd counts before allocating anything.
        let remaining = UInt64(file.bytes.count - r.offset)
        guard tensorCount <= remaining / 8, kvCount <= remaining / 8 else {
            throw ModelFormatError.truncated(path: path, what: "header counts (\(tensorCount) tensors, \(kvCount) keys)", offset: r.offset, fileSize: file.bytes.count)
        }
        var md: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try r.readString("metadata key")
            let type = try r.read(UInt32.self, "type of '\(key)'")
            md[key] = try Self.readValue(&r, type: type, key: key, depth: 0)
        }
        metadata = md
        var align = 32
        if let a = md["general.alignment"] {
            guard let v = a.int, v > 0, v & (v - 1) == 0 else {
                throw ModelFormatError.invalidMetadata(path: path, key: "general.alignment", reason: "must be a power of two")
            }
            align = v
        }
        alignment = align
        var infos: [(String, [Int], UInt32, UInt64)] = []
        infos.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let name = try r.readString("name of tensor #\(i)")
            let dims = try r.read(UInt32.self, "dimension count of '\(name)'")
            guard dims >= 1, dims <= 8 else { throw ModelFormatError.invalidTensor(path: path, name: name, reason: "\(dims) dimensions") }
            var shape: [Int] = []
            for _ in 0..<dims {
                let d = try r.read(UInt64.self, "shape of '\(name)'")
                guard d <= UInt64(1 << 40) else { throw ModelFormatError.invalidTensor(path: path, name: name, reason: "dimension \(d) is absurd") }
                shape.append(Int(d))
            }
            let type = try r.read(UInt32.self, "type of '\(name)'")
            let off = try r.read(UInt64.self, "offset of '\(name)'")
            infos.append((name, shape, type, off))
        }
        let dataStart = (r.offset + align - 1) / align * align
        var list: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for (name, shape, rawType, off) in infos {
            guard let type = GGMLType(rawValue: rawType) else {
                throw ModelFormatError.invalidTensor(path: path, name: name, reason: "unknown ggml type id \(rawType)")
            }
            var n = 1
            for d in shape {
                let (p, overflow) = n.multipliedReportingOverflow(by: d)
                guard !overflow else {
                    throw ModelFormatError.invalidTensor(path: path, name: name, reason: "shape \(shape) has more elements than can be counted")
                }
                n = p
            }
            var bytes = 0
            if let layout = type.blockLayout {
                guard shape[0] % layout.elements == 0 else {
                    throw ModelFormatError.invalidTensor(path: path, name: name, reason: "row length \(shape[0]) is not a multiple of the \(type) block size \(layout.elements)")
                }
                let (b, overflow) = (n / layout.elements).multipliedReportingOverflow(by: layout.bytes)
                guard !overflow else {
                    throw ModelFormatError.invalidTensor(path: path, name: name, reason: "shape \(shape) of \(type) needs more bytes than can be counted")
                }
                bytes = b
            }
            guard off <= UInt64(file.bytes.count), off % UInt64(align) == 0 else {
                throw ModelFormatError.invalidTensor(path: path, name: name, reason: "data offset \(off) is out of range or not aligned to \(align)")
            }
            let abs = dataStart + Int(off)
            guard abs <= file.bytes.count, bytes <= file.bytes.count - abs else {
                throw ModelFormatError.truncated(path: path, what: "data of tensor '\(name)' (\(bytes) bytes)", offset: abs, fileSize: file.bytes.count)
            }
            guard index[name] == nil else { throw ModelFormatError.invalidTensor(path: path, name: name, reason: "appears twice") }
            index[name] = list.count
            list.append(GGUFTensorInfo(name: name, shape: shape, type: type, offset: abs, byteCount: bytes))
        }
        tensors = list
        byName = index
    }

    private static func readValue(_ r: inout ByteReader, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try r.read(UInt8.self, key))
        case 1: return .int8(try r.read(Int8.self, key))
        case 2: return .uint16(try r.read(UInt16.self, key))
        case 3: return .int16(try r.read(Int16.self, key))
        case 4: return .uint32(try r.read(UInt32.self, key))
        case 5: return .int32(try r.read(Int32.self, key))
        case 6: return .float32(try r.readFloat(key))
        case 7:
            let b = try r.read(UInt8.self, key)
            guard b <= 1 else { throw ModelFormatError.invalidMetadata(path: r.path, key: key, reason: "bool byte \(b)") }
            return .bool(b == 1)
        case 8: return .string(try r.readString(key))
        case 9:
            guard depth < 4 else { throw ModelFormatError.invalidMetadata(path: r.path, key: key, reason: "arrays nested too deep") }
            let elemType = try r.read(UInt32.self, key)
            let count = try r.read(UInt64.self, key)
            guard count <= UInt64(r.bytes.count - r.offset) else {
                throw ModelFormatError.truncated(path: r.path, what: "array '\(key)' of \(count) elements", offset: r.offset, fileSize: r.bytes.count)
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<count { values.append(try readValue(&r, type: elemType, key: key, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint64(try r.read(UInt64.self, key))
        case 11: return .int64(try r.read(Int64.self, key))
        case 12: return .float64(try r.readDouble(key))
        default:
            throw ModelFormatError.invalidMetadata(path: r.path, key: key, reason: "unknown value type \(type)")
        }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? { byName[name].map { tensors[$0] } }

    /// The tensor's bytes inside the mapping (valid while this object lives).
    public func rawData(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[t.offset..<(t.offset + t.byteCount)])
    }

    /// Decodes the tensor into `dst` (elementCount floats).
    public func dequantize(_ t: GGUFTensorInfo, into dst: UnsafeMutablePointer<Float>) throws {
        guard t.type.isDecodable else { throw ModelFormatError.unsupportedTensorType(name: t.name, type: "\(t.type)") }
        guard t.elementCount == 0 || akv_dequantize(t.type.rawValue, rawData(t).baseAddress, dst, Int64(t.elementCount)) == 0 else {
            throw ModelFormatError.invalidTensor(path: path, name: t.name, reason: "cannot decode \(t.elementCount) elements of \(t.type)")
        }
    }

    public func dequantize(_ t: GGUFTensorInfo) throws -> [Float] {
        guard t.type.isDecodable else { throw ModelFormatError.unsupportedTensorType(name: t.name, type: "\(t.type)") }
        if t.elementCount == 0 { return [] }
        return try [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            try dequantize(t, into: buf.baseAddress!)
            n = t.elementCount
        }
    }
}
