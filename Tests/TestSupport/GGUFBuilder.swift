import Foundation

/// Writes small GGUF v3 files for tests that feed the readers hostile but well-formed input:
/// any metadata and any tensor directory entries (shapes, types, offsets), with `data` after
/// the aligned header. Nothing here checks what it writes.
public struct GGUFBuilder {
    public enum Value {
        case uint32(UInt32), int32(Int32), uint64(UInt64), float32(Float), string(String), strings([String])
    }
    public struct Tensor {
        public var name: String
        public var shape: [UInt64]
        public var type: UInt32
        public var offset: UInt64
        public init(name: String, shape: [UInt64], type: UInt32, offset: UInt64 = 0) {
            self.name = name; self.shape = shape; self.type = type; self.offset = offset
        }
    }

    public var metadata: [(String, Value)] = []
    public var tensors: [Tensor] = []
    /// Bytes after the header (padded to 32), where tensor offsets point.
    public var data: [UInt8] = []
    public init() {}

    public func bytes() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        u32(0x4655_4747)  // "GGUF"
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, value) in metadata {
            str(key)
            switch value {
            case .uint32(let v): u32(4); u32(v)
            case .int32(let v): u32(5); u32(UInt32(bitPattern: v))
            case .float32(let v): u32(6); u32(v.bitPattern)
            case .string(let s): u32(8); str(s)
            case .uint64(let v): u32(10); u64(v)
            case .strings(let a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            }
        }
        for t in tensors {
            str(t.name)
            u32(UInt32(t.shape.count))
            t.shape.forEach(u64)
            u32(t.type)
            u64(t.offset)
        }
        while out.count % 32 != 0 { out.append(0) }
        return out + data
    }

    /// Writes the file to a fresh temporary path and returns it.
    public func write(name: String = "test.gguf") throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("akv-\(UUID().uuidString)-\(name)")
        try Data(bytes()).write(to: url)
        return url.path
    }
}
