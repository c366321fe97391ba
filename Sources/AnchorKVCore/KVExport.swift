import Foundation
import KVStore
import KnowledgeBase
import LLM
import SAC
import Synchronization
import Tokenizer

/// What another engine needs to use a document's KV: shapes, positions, RoPE, and how SAC decodes.
public struct KVLayout: Codable, Sendable {
    public struct Model: Codable, Sendable {
        public var name, fingerprint: String
        public var layers, heads, kvHeads, headDim, kvDim: Int
        public var ropeTheta: Double
        public var ropeScaling: String?
        public var ropeLayout = "rotate_half (Hugging Face order)"
        public var contextLength: Int

        enum CodingKeys: String, CodingKey { case name, fingerprint, layers, heads, kvHeads, headDim, kvDim, ropeTheta, ropeScaling, ropeLayout, contextLength }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name); try c.encode(fingerprint, forKey: .fingerprint); try c.encode(layers, forKey: .layers)
            try c.encode(heads, forKey: .heads); try c.encode(kvHeads, forKey: .kvHeads); try c.encode(headDim, forKey: .headDim)
            try c.encode(kvDim, forKey: .kvDim); try c.encode(ropeTheta, forKey: .ropeTheta); try c.encode(ropeScaling, forKey: .ropeScaling)
            try c.encode(ropeLayout, forKey: .ropeLayout); try c.encode(contextLength, forKey: .contextLength)
        }
    }
    public struct KV: Codable, Sendable {
        public var ratio: Int
        public var adapter: String
        public var anchorSelection: String
        /// Tokens per window: window i of a context starts at position i * window + 1.
        public var window: Int
        public var contextTokens, anchors, windows: Int
        public var windowAnchorCounts: [Int]
        public var positions: [Int]
        public var dtype: String
        public var shape: [Int]
        public var byteOrder = "little-endian"
        public var tensorNames = "layer{l}.k and layer{l}.v (safetensors); layers[l].keys/.values (json, base64)"
        public var keys = "before RoPE: rotate each anchor's key at its position (rotate-half, rope_theta) before attention"
        public var decoding = "past KV = the anchors at their positions; with an adapter, its [LM] embedding goes at position context_tokens and the question segment follows; without one the question starts at context_tokens + 1"
    }
    public var format = KVFile.formatName
    public var formatVersion = KVFile.formatVersion
    public var document: DocumentInfo
    public var model: Model
    public var kv: KV
    /// format=json with data: each layer's keys and values, base64 of little-endian f16/f32.
    public var layers: [Layer]?

    public struct Layer: Codable, Sendable { public var keys, values: String }
}

/// One tensor of a KV file, in the order the file holds them.
public struct KVTensorSlot: Sendable {
    public let layer: Int
    public let isKey: Bool
    public let byteCount: Int
}

/// A document's whole anchor KV as a KV file (the file `anchorkv compress` writes of the same
/// context, byte for byte), read from one RocksDB snapshot: the header first (every record
/// already read and checked), then the tensors a layer at a time, one layer in memory.
public final class KVFileDownload: Sendable {
    public let document: DocumentInfo
    public let layout: KVLayout
    public let header: Data
    public let tensors: [KVTensorSlot]
    public let fileBytes: Int
    let kb: KnowledgeBase
    let record: DocumentRecord
    let snapshot: any StoreSnapshot
    let dtype: KVFile.DType

    init(kb: KnowledgeBase, record: DocumentRecord, layout: KVLayout, context: CompressedContext, snapshot: any StoreSnapshot, dtype: KVFile.DType) throws {
        self.kb = kb; self.record = record; self.layout = layout; self.snapshot = snapshot; self.dtype = dtype
        document = layout.document
        let h = try KVFile.header(context, dtype: dtype, extra: Self.metadata(layout, record: record, model: kb.model.name))
        header = h.bytes
        tensors = h.tensors.map { KVTensorSlot(layer: $0.layer, isKey: $0.isKey, byteCount: $0.byteCount) }
        fileBytes = h.fileBytes
    }

    /// The string metadata of a KV download besides the format's own (document, model, layout).
    static func metadata(_ layout: KVLayout, record: DocumentRecord, model: String) -> [String: String] {
        ["document_id": record.id, "document_title": record.title, "model_name": model, "layout": Results.json(layout)]
    }

    /// Layer `l`'s keys and values as the file stores them.
    public func layer(_ l: Int) throws(CoreError) -> (keys: Data, values: Data) {
        let (k, v) = try CoreError.mapping { try kb.documentLayer(record, layer: l, snapshot: snapshot) }
        return (KVFile.tensorBytes(k, dtype: dtype), KVFile.tensorBytes(v, dtype: dtype))
    }

    // The JSON form, streamed as jsonHead, jsonLayer(0..<layers), jsonTail: one object holding the
    // layout's fields and "layers": [{"keys": base64, "values": base64}, ...]; one layer in memory.
    public var layers: Int { layout.model.layers }

    public func jsonHead() -> Data {
        var head = Data(Results.json(layout).utf8)  // `layers` is nil here, so the object has no such key
        if head.last == UInt8(ascii: "}") { head.removeLast() }
        head.append(contentsOf: Array(#","layers":["#.utf8))
        return head
    }

    public func jsonLayer(_ l: Int) throws(CoreError) -> Data {
        let (k, v) = try layer(l)
        return Data(((l > 0 ? "," : "") + #"{"keys":""# + k.base64EncodedString() + #"","values":""# + v.base64EncodedString() + #""}"#).utf8)
    }

    public var jsonTail: Data { Data("]}".utf8) }
}

extension KnowledgeService {
    static func kvDType(_ name: String) throws(CoreError) -> KVFile.DType {
        guard let d = KVFile.DType(rawValue: name) else { throw .invalidInput("dtype must be f16 or f32, not '\(name)'") }
        return d
    }

    func layout(_ d: DocumentRecord, _ ctx: CompressedContext, dtype: KVFile.DType) -> KVLayout {
        let c = model.config
        return KVLayout(document: DocumentInfo(d),
                        model: .init(name: model.name, fingerprint: ctx.modelFingerprint, layers: c.layerCount, heads: c.headCount, kvHeads: c.kvHeadCount,
                                     headDim: c.headDim, kvDim: c.kvDim, ropeTheta: c.ropeTheta, ropeScaling: c.ropeScaling?.type, contextLength: c.contextLength),
                        kv: .init(ratio: ctx.ratio, adapter: ctx.adapterFingerprint ?? "none", anchorSelection: ctx.selection, window: kb.layout.window,
                                  contextTokens: ctx.contextLength, anchors: ctx.anchorCount, windows: ctx.windowAnchorCounts.count,
                                  windowAnchorCounts: ctx.windowAnchorCounts, positions: ctx.positions.map { Int($0) }, dtype: dtype.rawValue,
                                  shape: [ctx.anchorCount, ctx.kvDim]))
    }

    /// A document's KV as a KV file, to stream (`KVFileDownload.layer`).
    public func kvFile(_ id: String, dtype name: String = "f16") throws(CoreError) -> KVFileDownload {
        let dtype = try Self.kvDType(name)
        return try retryingConcurrentChange {
            let snap = kb.store.snapshot()
            guard let d = try kb.store.document(id, snapshot: snap) else { throw CoreError.noDocument(id) }
            let ctx = try kb.layout(of: d, snapshot: snap)
            return try KVFileDownload(kb: kb, record: d, layout: layout(d, ctx, dtype: dtype), context: ctx, snapshot: snap, dtype: dtype)
        }
    }

    /// A document's KV layout (what the JSON download says before the tensors), from one snapshot.
    public func kvLayout(_ id: String, dtype name: String = "f16") throws(CoreError) -> KVLayout {
        let dtype = try Self.kvDType(name)
        return try retryingConcurrentChange {
            let snap = kb.store.snapshot()
            guard let d = try kb.store.document(id, snapshot: snap) else { throw CoreError.noDocument(id) }
            return layout(d, try kb.layout(of: d, snapshot: snap), dtype: dtype)
        }
    }
}

/// Answer tokens as text for streaming: whole UTF-8 characters only (a character split across
/// tokens waits for its last token).
public final class AnswerText: Sendable {
    private let decoder: Mutex<StreamingDecoder>
    init(_ d: sending StreamingDecoder) { decoder = Mutex(d) }
    public func append(_ token: Int32) -> String { decoder.withLock { $0.append(token) } }
    public func flush() -> String { decoder.withLock { $0.flush() } }
}

extension KnowledgeService {
    public func makeAnswerText() -> AnswerText { AnswerText(model.tokenizer.makeStreamingDecoder(skipSpecial: true)) }
}
