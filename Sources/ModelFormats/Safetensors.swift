import CKernels
import Foundation

/// Element types a safetensors file may declare; floats() decodes F32, F16 and BF16.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major shape, outermost dimension first (PyTorch order).
    public let shape: [Int]
    /// Absolute byte range in the file.
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// One safetensors file, memory-mapped: 8-byte header length, JSON header, data.
public final class SafetensorsFile: Sendable {
    public let path: String
    public let tensors: [String: SafetensorsTensorInfo]
    /// The "__metadata__" string map.
    public let metadata: [String: String]
    private let file: MappedFile

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        let size = file.bytes.count
        func bad(_ why: String) -> ModelFormatError { .invalidSafetensors(path: path, reason: why) }
        guard size >= 8 else { throw bad("file is \(size) bytes, shorter than the 8-byte header length") }
        let headerLen = UInt64(littleEndian: file.bytes.loadUnaligned(as: UInt64.self))
        guard headerLen <= 100_000_000, Int(headerLen) <= size - 8 else {
            throw bad("header length \(headerLen) exceeds the file size \(size) (truncated file?)")
        }
        let headerBytes = Data(UnsafeRawBufferPointer(rebasing: file.bytes[8..<(8 + Int(headerLen))]))
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes) as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        let dataStart = 8 + Int(headerLen)
        var infos: [String: SafetensorsTensorInfo] = [:]
        var md: [String: String] = [:]
        for (name, value) in json {
            guard let entry = value as? [String: Any] else { throw bad("entry '\(name)' is not an object") }
            if name == "__metadata__" {
                for (k, v) in entry {
                    guard let s = v as? String else { throw bad("metadata '\(k)' is not a string") }
                    md[k] = s
                }
                continue
            }
            guard let dt = entry["dtype"] as? String else { throw bad("tensor '\(name)' has no dtype") }
            guard let dtype = SafetensorsDType(rawValue: dt) else {
                throw ModelFormatError.unsupportedTensorType(name: name, type: dt)
            }
            guard let shapeAny = entry["shape"] as? [Any], let offs = entry["data_offsets"] as? [Any], offs.count == 2 else {
                throw bad("tensor '\(name)' lacks shape or data_offsets")
            }
            // Sizes and offsets are whole numbers in range (a fraction or a number past 2^53 is a
            // lie, not something to round), and every product is overflow-checked: a shape whose
            // byte count wraps to the stored size must not pass as a small tensor.
            func whole(_ v: Any) -> Int? {
                guard let n = v as? NSNumber else { return nil }
                let d = n.doubleValue
                guard d.isFinite, d == d.rounded(), d >= 0, d <= 9_007_199_254_740_992 else { return nil }
                return Int(d)
            }
            let shape = try shapeAny.map { v -> Int in
                guard let n = whole(v), n < 1 << 40 else { throw bad("tensor '\(name)' has an invalid shape \(shapeAny)") }
                return n
            }
            guard let begin = whole(offs[0]), let end = whole(offs[1]) else { throw bad("tensor '\(name)' has invalid data_offsets \(offs)") }
            guard end >= begin, end <= size - dataStart else {
                throw ModelFormatError.truncated(path: path, what: "data of tensor '\(name)'", offset: dataStart, fileSize: size)
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw bad("tensor '\(name)' shape \(shape) overflows") }
                count = p
            }
            let (bytes, o) = count.multipliedReportingOverflow(by: dtype.size)
            guard !o else { throw bad("tensor '\(name)' shape \(shape) of \(dtype.rawValue) overflows") }
            guard bytes == end - begin else {
                throw bad("tensor '\(name)' has \(end - begin) bytes, but \(dtype.rawValue) \(shape) needs \(bytes)")
            }
            infos[name] = SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, offset: dataStart + begin, byteCount: end - begin)
        }
        tensors = infos
        metadata = md
    }

    public func rawData(_ t: SafetensorsTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[t.offset..<(t.offset + t.byteCount)])
    }

    /// The tensor as fp32 (F32, F16 and BF16 only).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw ModelFormatError.missingTensor(name: name) }
        return try floats(t)
    }

    public func floats(_ t: SafetensorsTensorInfo) throws -> [Float] {
        let n = t.elementCount
        if n == 0 { return [] }
        let src = rawData(t)
        return try [Float](unsafeUninitializedCapacity: n) { buf, count in
            let dst = buf.baseAddress!
            switch t.dtype {
            case .f32:
                UnsafeMutableRawPointer(dst).copyMemory(from: src.baseAddress!, byteCount: n * 4)
            case .f16, .bf16:
                // Data offsets need not be 2-byte aligned, so read through an aligned copy.
                let tmp = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
                defer { tmp.deallocate() }
                UnsafeMutableRawPointer(tmp).copyMemory(from: src.baseAddress!, byteCount: n * 2)
                if t.dtype == .f16 { akv_f16_to_f32_n(tmp, dst, Int64(n)) } else { akv_bf16_to_f32_n(tmp, dst, Int64(n)) }
            default:
                throw ModelFormatError.unsupportedTensorType(name: t.name, type: t.dtype.rawValue)
            }
            count = n
        }
    }
}

/// The safetensors files of a Hugging Face checkpoint directory, sharded or not.
public final class SafetensorsModel: Sendable {
    public let directory: String
    private let files: [SafetensorsFile]
    private let owner: [String: Int]

    public init(directory: String) throws {
        self.directory = directory
        let dir = URL(fileURLWithPath: directory)
        let fm = FileManager.default
        var names: [String]
        let index = dir.appendingPathComponent("model.safetensors.index.json")
        if fm.fileExists(atPath: index.path) {
            guard let data = try? Data(contentsOf: index),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw ModelFormatError.invalidSafetensors(path: index.path, reason: "index has no weight_map object")
            }
            names = Array(Set(map.values)).sorted()
        } else {
            let all = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            names = all.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !names.isEmpty else {
            throw ModelFormatError.cannotOpen(path: directory, reason: "no *.safetensors files in the directory")
        }
        var files: [SafetensorsFile] = []
        var owner: [String: Int] = [:]
        for n in names {
            let f = try SafetensorsFile(path: dir.appendingPathComponent(n).path)
            for name in f.tensors.keys {
                guard owner[name] == nil else {
                    throw ModelFormatError.invalidSafetensors(path: f.path, reason: "tensor '\(name)' also appears in \(files[owner[name]!].path)")
                }
                owner[name] = files.count
            }
            files.append(f)
        }
        self.files = files
        self.owner = owner
    }

    public var tensorNames: [String] { owner.keys.sorted() }

    public func info(_ name: String) -> SafetensorsTensorInfo? { owner[name].flatMap { files[$0].tensors[name] } }

    public func floats(_ name: String) throws -> [Float] {
        guard let i = owner[name] else { throw ModelFormatError.missingTensor(name: name) }
        return try files[i].floats(name)
    }

    /// The stored bytes of a tensor, as in its file.
    public func rawData(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let i = owner[name], let t = files[i].tensors[name] else { throw ModelFormatError.missingTensor(name: name) }
        return files[i].rawData(t)
    }
}

/// Writes a safetensors file atomically (temporary file, fsync, rename): a reader never sees
/// a half-written file under the final name.
public struct SafetensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public let data: Data
        public init(name: String, dtype: SafetensorsDType, shape: [Int], data: Data) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.data = data
        }
        /// fp32 values stored as F32, F16 or BF16.
        public init(name: String, shape: [Int], floats: [Float], as dtype: SafetensorsDType = .f32) {
            precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) values for shape \(shape)")
            self.init(name: name, dtype: dtype, shape: shape, data: SafetensorsWriter.bytes(floats, as: dtype))
        }
    }

    /// fp32 values as the bytes of an F32, F16 or BF16 tensor.
    public static func bytes(_ floats: [Float], as dtype: SafetensorsDType) -> Data {
        switch dtype {
        case .f16, .bf16:
            var half = [UInt16](repeating: 0, count: floats.count)
            if dtype == .f16 { akv_f32_to_f16_n(floats, &half, Int64(floats.count)) } else { akv_f32_to_bf16_n(floats, &half, Int64(floats.count)) }
            return half.withUnsafeBytes { Data($0) }
        default:
            precondition(dtype == .f32, "floats can be stored as F32, F16 or BF16")
            return floats.withUnsafeBytes { Data($0) }
        }
    }

    /// A tensor's name, dtype and shape: what the header says of it.
    public struct TensorSpec: Sendable {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public init(name: String, dtype: SafetensorsDType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
        public var byteCount: Int { shape.reduce(1, *) * dtype.size }
    }

    /// The file's first bytes (length, JSON header padded to 8 bytes) for these tensors; their
    /// data follows in `order` (sorted by name), `dataBytes` in all. `write` writes exactly this
    /// header, so a file streamed as header + each tensor's bytes in `order` is the same file.
    public static func header(_ tensors: [TensorSpec], metadata: [String: String] = [:]) throws -> (bytes: Data, order: [TensorSpec], dataBytes: Int) {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        let order = tensors.sorted(by: { $0.name < $1.name })
        var offset = 0
        for t in order {
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.byteCount]]
            offset += t.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data section starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        var len = UInt64(json.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(json)
        return (out, order, offset)
    }

    public static func write(_ entries: [Entry], metadata: [String: String] = [:], to path: String) throws {
        for e in entries {
            precondition(e.data.count == e.shape.reduce(1, *) * e.dtype.size, "\(e.name): byte count does not match shape")
        }
        var out = try header(entries.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }, metadata: metadata).bytes
        for e in entries.sorted(by: { $0.name < $1.name }) { out.append(e.data) }
        try AtomicFile.write(out, to: path)
    }
}

/// Whole-file replacement that survives crashes: write a sibling temp file, fsync, rename.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) , let h = FileHandle(forWritingAtPath: tmp) else {
            throw ModelFormatError.writeFailed(path: path, reason: "cannot create \(tmp)")
        }
        do {
            try h.write(contentsOf: data)
            try h.synchronize()
            try h.close()
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw ModelFormatError.writeFailed(path: path, reason: "\(error)")
        }
        guard rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: tmp)
            throw ModelFormatError.writeFailed(path: path, reason: why)
        }
        // The rename is durable only once the folder is synced.
        var dir = (path as NSString).deletingLastPathComponent
        if dir.isEmpty { dir = "." }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw ModelFormatError.writeFailed(path: path, reason: "cannot open its folder to sync it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ModelFormatError.writeFailed(path: path, reason: "fsync of its folder failed: \(String(cString: strerror(errno)))") }
    }
}
