import Foundation
import ModelFormats

/// A compressed context on disk (what `anchorkv compress` writes): safetensors with
/// `layer{l}.k` / `layer{l}.v` [anchors, kvDim] (keys before RoPE) and string metadata.
public enum KVFile {
    public static let formatName = "anchorkv.sac-kv"
    public static let formatVersion = "1"

    public enum DType: String, Sendable, CaseIterable {
        case f16, f32
        var safetensors: SafetensorsDType { self == .f16 ? .f16 : .f32 }
    }

    public static func write(_ ctx: CompressedContext, to path: String, dtype: DType = .f16, extra: [String: String] = [:]) throws {
        try ctx.validate()
        var entries: [SafetensorsWriter.Entry] = []
        let shape = [ctx.anchorCount, ctx.kvDim]
        for l in 0..<ctx.layerCount {
            entries.append(.init(name: "layer\(l).k", shape: shape, floats: ctx.keys[l], as: dtype.safetensors))
            entries.append(.init(name: "layer\(l).v", shape: shape, floats: ctx.values[l], as: dtype.safetensors))
        }
        try SafetensorsWriter.write(entries, metadata: metadata(ctx, extra: extra), to: path)
    }

    /// A tensor of a KV file: layer `layer`'s keys or values.
    public struct Tensor: Sendable {
        public let layer: Int
        public let isKey: Bool
        public let byteCount: Int
    }

    /// What `write` would put before the tensors of `layout` (a context whose keys and values
    /// may be empty: only its layer count, anchors, positions and fingerprints are used), the
    /// tensors in the order their data follows, and the file's size. Streamed as header + each
    /// tensor's bytes (`SafetensorsWriter.bytes` of its floats) in that order, it is the file
    /// `write` makes of the full context, byte for byte.
    public static func header(_ layout: CompressedContext, dtype: DType = .f16, extra: [String: String] = [:]) throws
        -> (bytes: Data, tensors: [Tensor], fileBytes: Int) {
        try layout.validateLayout()
        let shape = [layout.anchorCount, layout.kvDim]
        var specs: [SafetensorsWriter.TensorSpec] = [], which: [String: (Int, Bool)] = [:]
        for l in 0..<layout.layerCount {
            for isKey in [true, false] {
                let name = "layer\(l).\(isKey ? "k" : "v")"
                specs.append(.init(name: name, dtype: dtype.safetensors, shape: shape))
                which[name] = (l, isKey)
            }
        }
        let h = try SafetensorsWriter.header(specs, metadata: metadata(layout, extra: extra))
        let tensors = h.order.map { Tensor(layer: which[$0.name]!.0, isKey: which[$0.name]!.1, byteCount: $0.byteCount) }
        return (h.bytes, tensors, h.bytes.count + h.dataBytes)
    }

    /// The bytes of one tensor of a KV file with `dtype` (what `write` stores for these floats).
    public static func tensorBytes(_ floats: [Float], dtype: DType) -> Data { SafetensorsWriter.bytes(floats, as: dtype.safetensors) }

    static func metadata(_ ctx: CompressedContext, extra: [String: String]) -> [String: String] {
        var md = extra
        md["format"] = formatName
        md["format_version"] = formatVersion
        md["ratio"] = String(ctx.ratio)
        md["context_length"] = String(ctx.contextLength)
        md["layers"] = String(ctx.layerCount)
        md["kv_dim"] = String(ctx.kvDim)
        md["positions"] = ctx.positions.map(String.init).joined(separator: ",")
        md["window_anchor_counts"] = ctx.windowAnchorCounts.map(String.init).joined(separator: ",")
        md["base_model"] = ctx.modelFingerprint
        md["adapter"] = ctx.adapterFingerprint ?? ""
        md["anchor_selection"] = ctx.selection
        return md
    }

    /// True when the file starts like a KV file (used to tell KV files from text contexts).
    public static func looksLikeKVFile(_ path: String) -> Bool {
        guard let f = try? SafetensorsFile(path: path) else { return false }
        return f.metadata["format"] == formatName
    }

    public static func read(_ path: String) throws -> (context: CompressedContext, metadata: [String: String]) {
        func bad(_ why: String) -> SACError { .invalidKVFile(path: path, reason: why) }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw bad("\(error)") }
        let md = file.metadata
        guard md["format"] == formatName else { throw bad("not an AnchorKV KV file (metadata format is \(md["format"] ?? "missing"))") }
        guard md["format_version"] == formatVersion else { throw bad("format_version \(md["format_version"] ?? "missing") is not supported (this build reads \(formatVersion))") }
        func int(_ k: String) throws -> Int {
            guard let s = md[k], let v = Int(s) else { throw bad("metadata '\(k)' is missing or not an integer") }
            return v
        }
        func ints(_ k: String) throws -> [Int] {
            guard let s = md[k] else { throw bad("metadata '\(k)' is missing") }
            let parts = s.split(separator: ",").map { Int($0) }
            guard parts.allSatisfy({ $0 != nil }) else { throw bad("metadata '\(k)' is not a list of integers") }
            return parts.map { $0! }
        }
        let layers = try int("layers"), kvDim = try int("kv_dim")
        // Checked before anything is sized or looped over by them.
        guard (1...4096).contains(layers) else { throw bad("metadata 'layers' is \(layers), not 1...4096") }
        guard (1...1 << 20).contains(kvDim) else { throw bad("metadata 'kv_dim' is \(kvDim), not 1...\(1 << 20)") }
        let raw = try ints("positions")
        guard raw.allSatisfy({ $0 >= 1 && $0 <= Int(Int32.max) }) else { throw bad("metadata 'positions' holds a position outside 1...\(Int32.max)") }
        let positions = raw.map { Int32($0) }
        var keys: [[Float]] = [], values: [[Float]] = []
        for l in 0..<layers {
            for (name, isKey) in [("layer\(l).k", true), ("layer\(l).v", false)] {
                guard let t = file.tensors[name] else { throw bad("tensor \(name) is missing") }
                guard t.shape == [positions.count, kvDim] else { throw bad("tensor \(name) has shape \(t.shape), expected \([positions.count, kvDim])") }
                let v: [Float]
                do { v = try file.floats(t) } catch { throw bad("\(error)") }
                if isKey { keys.append(v) } else { values.append(v) }
            }
        }
        guard let base = md["base_model"], !base.isEmpty else { throw bad("metadata 'base_model' is missing") }
        let adapter = md["adapter"].flatMap { $0.isEmpty ? nil : $0 }
        let ctx = CompressedContext(ratio: try int("ratio"), contextLength: try int("context_length"), positions: positions,
                                    windowAnchorCounts: try ints("window_anchor_counts"), keys: keys, values: values,
                                    kvDim: kvDim, modelFingerprint: base, adapterFingerprint: adapter,
                                    selection: md["anchor_selection"] ?? "uniform")
        do { try ctx.validate() } catch { throw bad("\(error)") }
        return (ctx, md)
    }
}
