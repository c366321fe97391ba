import Foundation
import Synchronization

/// What a store was built with. Opening a store with another base model is refused.
public struct StoreManifest: Codable, Sendable, Equatable {
    public static let currentFormat = 1
    public var formatVersion: Int
    public var modelFingerprint: String
    public var modelName: String
    /// Ratio (as a string key) -> adapter fingerprint, or "none" for training-free anchors.
    public var adapters: [String: String]
    public var dtype: String
    public var createdAt: String
    /// The model's KV dimensions, which every record must have (absent in stores made before it
    /// was recorded; `KVStore.modelShape` then reads it from the stored documents).
    public var shape: ModelShape?

    public init(formatVersion: Int, modelFingerprint: String, modelName: String, adapters: [String: String], dtype: String,
                createdAt: String, shape: ModelShape?) {
        self.formatVersion = formatVersion; self.modelFingerprint = modelFingerprint; self.modelName = modelName
        self.adapters = adapters; self.dtype = dtype; self.createdAt = createdAt; self.shape = shape
    }
}

/// What a model's KV looks like to the store: layers per window and columns (kv_dim) per record.
public struct ModelShape: Codable, Sendable, Equatable, CustomStringConvertible {
    public var layers: Int
    public var kvDim: Int
    public init(layers: Int, kvDim: Int) { self.layers = layers; self.kvDim = kvDim }
    public var description: String { "\(layers) layers of kv_dim \(kvDim)" }
}

/// One ingested document (docs column family, keyed by id).
public struct DocumentRecord: Codable, Sendable, Equatable {
    public var id: String
    public var title: String
    public var source: String
    /// sha256 of the text: re-ingesting identical text is a no-op.
    public var contentHash: String
    /// Internal number: the big-endian prefix of the document's window, KV and index keys.
    public var number: UInt64
    public var ratio: Int
    /// Adapter fingerprint, nil for training-free anchors.
    public var adapter: String?
    public var windows: Int
    /// Encoder input tokens (BOS + header + text).
    public var tokens: Int
    public var anchors: Int
    public var kvBytes: Int
    public var ingestedAt: String

    public init(id: String, title: String, source: String, contentHash: String, number: UInt64 = 0, ratio: Int, adapter: String?,
                windows: Int, tokens: Int, anchors: Int, kvBytes: Int = 0, ingestedAt: String) {
        self.id = id; self.title = title; self.source = source; self.contentHash = contentHash; self.number = number
        self.ratio = ratio; self.adapter = adapter; self.windows = windows; self.tokens = tokens; self.anchors = anchors
        self.kvBytes = kvBytes; self.ingestedAt = ingestedAt
    }
}

/// One window of a document (windows column family): its encoder tokens and text, and the
/// index terms it was posted under (so deletion needs no tokenizer).
public struct WindowRecord: Codable, Sendable, Equatable {
    public var tokens: [Int32]
    public var text: String
    /// Global token offset of the window in its document (window index * window size).
    public var start: Int
    public var terms: [String: Int]
    public init(tokens: [Int32], text: String, start: Int, terms: [String: Int]) {
        self.tokens = tokens; self.text = text; self.start = start; self.terms = terms
    }
    public var termCount: Int { terms.values.reduce(0, +) }
}

/// Everything one document write stores, applied as one atomic RocksDB batch.
public struct DocumentWrite: Sendable {
    public var record: DocumentRecord
    public var windows: [WindowRecord]
    /// [window][layer]
    public var kv: [[TensorRecord]]
    public init(record: DocumentRecord, windows: [WindowRecord], kv: [[TensorRecord]]) {
        self.record = record; self.windows = windows; self.kv = kv
    }
}

/// A document with its KV records already encoded (TensorCodec bytes, [window][layer]).
public struct EncodedDocument: Sendable {
    public var record: DocumentRecord
    public var windows: [WindowRecord]
    public var kv: [[[UInt8]]]
    public init(record: DocumentRecord, windows: [WindowRecord], kv: [[[UInt8]]]) {
        self.record = record; self.windows = windows; self.kv = kv
    }
}

/// A posting of the lexical index: a window containing a term.
public struct Posting: Sendable, Equatable {
    public var document: UInt64
    public var window: Int
    public var termFrequency: Int
    public var windowLength: Int
    public init(document: UInt64, window: Int, termFrequency: Int, windowLength: Int) {
        self.document = document; self.window = window; self.termFrequency = termFrequency; self.windowLength = windowLength
    }
}

public struct StoreStats: Sendable {
    public var documents = 0
    public var windows = 0
    public var tokens = 0
    public var anchors = 0
    public var kvBytes = 0
    /// Bytes of every column family's keys and values (logical, before RocksDB's own overhead).
    public var logicalBytes: [String: Int] = [:]
    public init() {}
}

/// The RocksDB-backed store: key schema, codecs, checksums, atomic document writes.
///
/// Column families and keys (all integers big-endian so prefix scans come back in order):
///   meta     "manifest" -> JSON StoreManifest; "next_doc" -> u64; "lexstats" -> JSON totals
///            (BM25 and the store's counters); "num/" doc u64 -> id (document numbers to ids)
///   docs     id (UTF-8) -> JSON DocumentRecord
///   windows  doc u64 | window u32 -> JSON WindowRecord
///   kv       doc u64 | window u32 | ratio u16 | layer u16 -> tensor record (TensorCodec)
///   lex      term (UTF-8) | 0x00 | doc u64 | window u32 -> tf u32, window length u32
public final class KVStore: Sendable {
    public static let families = ["meta", "docs", "windows", "kv", "lex"]
    public let path: String
    public let db: RocksDB
    /// Read by queries while imports and compactions change it (under writeLock): its own lock.
    public var manifest: StoreManifest { storedManifest.withLock { $0 } }
    private let storedManifest: Mutex<StoreManifest>
    private func setManifest(_ m: StoreManifest) { storedManifest.withLock { $0 = m } }
    public let dtype: TensorDType
    /// The LZ4 policy of records this process writes (not saved in the store: each record says
    /// how it is stored). Measured on real anchor KVs, LZ4 saves nothing on fp16
    /// (docs/benchmarks.md), so records are raw by default.
    public var compression: CompressionPolicy {
        get { compressionPolicy.withLock { $0 } }
        set { compressionPolicy.withLock { $0 = newValue } }
    }
    private let compressionPolicy = Mutex<CompressionPolicy>(.none)
    /// One writer at a time inside the process (RocksDB's LOCK file keeps other processes out).
    private let writeLock = NSLock()

    /// Opens the store at `path`, creating it when `create` is set and nothing is there. A nil
    /// `modelFingerprint` opens an existing store for whatever model it holds (snapshot tools
    /// move bytes without running the model); creating a store needs one.
    /// `shape` (the model's layers and kv_dim, when the caller has the model) is recorded at
    /// creation, or the first time a store without one is opened with it, and must match.
    public init(path: String, modelFingerprint: String?, modelName: String?, create: Bool, dtype: TensorDType = .f16,
                shape: ModelShape? = nil) throws {
        self.path = path
        let exists = FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("CURRENT"))
        if !exists && !create { throw StoreError.notAStore(path: path) }
        if !exists { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        db = try RocksDB(path: path, families: Self.families, create: create)
        if let raw = try db.get("meta", Array("manifest".utf8)) {
            guard let m = try? JSONDecoder().decode(StoreManifest.self, from: Data(raw)) else { throw StoreError.corrupt("the store manifest is not valid JSON") }
            guard m.formatVersion == StoreManifest.currentFormat else { throw StoreError.unsupportedFormat(path: path, version: m.formatVersion) }
            if let modelFingerprint, m.modelFingerprint != modelFingerprint {
                throw StoreError.modelMismatch(path: path, store: "\(m.modelName) (\(m.modelFingerprint))", model: "\(modelName ?? "?") (\(modelFingerprint))")
            }
            var current = m
            self.dtype = TensorDType(name: m.dtype) ?? dtype
            if let shape {
                if let recorded = m.shape, recorded != shape {
                    throw StoreError.shapeMismatch(path: path, store: recorded, model: shape)
                }
                if m.shape == nil {
                    var updated = m
                    updated.shape = shape
                    let b = db.makeBatch()
                    b.put("meta", Array("manifest".utf8), try Self.json(updated))
                    try db.write(b)
                    current = updated
                }
            }
            storedManifest = Mutex(current)
        } else {
            guard create else { throw StoreError.notAStore(path: path) }
            guard let modelFingerprint, let modelName else { throw StoreError.invalidInput("creating a store needs the model's fingerprint") }
            let m = StoreManifest(formatVersion: StoreManifest.currentFormat, modelFingerprint: modelFingerprint, modelName: modelName,
                                  adapters: [:], dtype: dtype.description, createdAt: Self.timestamp(), shape: shape)
            storedManifest = Mutex(m)
            self.dtype = dtype
            let b = db.makeBatch()
            b.put("meta", Array("manifest".utf8), try Self.json(m))
            var totals = LexStats()
            totals.counted = true
            b.put("meta", Array("lexstats".utf8), try Self.json(totals))
            try db.write(b)
        }
        try upgradeIndexes()
        try discardStaged(nil)
    }

    public static func timestamp() -> String { ISO8601DateFormatter().string(from: Date()) }

    static func json<T: Encodable>(_ v: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return [UInt8](try e.encode(v))
    }

    // MARK: keys

    static func be64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
    static func be32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).bigEndian) { Array($0) } }
    static func be16(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt16(v).bigEndian) { Array($0) } }
    static func readBE(_ b: UnsafeRawBufferPointer, _ at: Int, _ n: Int) -> UInt64 {
        (0..<n).reduce(UInt64(0)) { $0 << 8 | UInt64(b[at + $1]) }
    }

    public static func windowKey(_ doc: UInt64, _ w: Int) -> [UInt8] { be64(doc) + be32(w) }
    public static func kvKey(_ doc: UInt64, _ w: Int, ratio: Int, layer: Int) -> [UInt8] { be64(doc) + be32(w) + be16(ratio) + be16(layer) }
    static func lexKey(_ term: String, _ doc: UInt64, _ w: Int) -> [UInt8] { Array(term.utf8) + [0] + be64(doc) + be32(w) }

    // MARK: manifest

    /// Records the adapter used for a ratio; a different adapter for a ratio the store already
    /// has would mix incompatible KV and is refused.
    public func registerAdapter(ratio: Int, fingerprint: String?) throws {
        writeLock.lock(); defer { writeLock.unlock() }
        let fp = fingerprint ?? "none"
        try checkAdapter(ratio: ratio, fingerprint: fingerprint)
        if manifest.adapters[String(ratio)] != nil { return }
        var m = manifest
        m.adapters[String(ratio)] = fp
        let b = db.makeBatch()
        b.put("meta", Array("manifest".utf8), try Self.json(m))
        try db.write(b)
        setManifest(m)
    }

    /// Refuses, without writing anything, an adapter other than the one the store holds `ratio`
    /// with. Writers check this before the slow encode; the registration itself goes into the
    /// batch of the first document that needs it (`put(_:adapters:)`, `replaceKV`).
    public func checkAdapter(ratio: Int, fingerprint: String?) throws {
        let fp = fingerprint ?? "none"
        if let existing = manifest.adapters[String(ratio)], existing != fp {
            throw StoreError.adapterConflict(ratio: ratio, stored: existing, requested: fp)
        }
    }

    // MARK: reads

    public func document(_ id: String, snapshot: (any StoreSnapshot)? = nil) throws -> DocumentRecord? {
        switch try stored(id, snapshot: snapshot) {
        case .absent: return nil
        case .whole(let d): return d
        case .unreadable: throw Self.unreadableRecord(id)
        }
    }

    /// What the store holds under a document id: nothing, a readable record, or a record that
    /// cannot be read (damaged), which ingest and import replace (`putEncoded`) and delete removes.
    public enum StoredDocument: Sendable, Equatable {
        case absent, whole(DocumentRecord), unreadable
    }

    public func stored(_ id: String, snapshot: (any StoreSnapshot)? = nil) throws -> StoredDocument {
        guard let raw = try db.get("docs", Array(id.utf8), snapshot: snapshot) else { return .absent }
        guard let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(raw)) else { return .unreadable }
        return .whole(d)
    }

    static func unreadableRecord(_ id: String) -> StoreError {
        .corrupt("the record of document '\(id)' is not valid JSON; repair it by ingesting its source again (anchorkv ingest FILE) or importing a snapshot that holds it (anchorkv import FILE), or delete it (anchorkv docs delete '\(id)')")
    }

    public func documents(snapshot: (any StoreSnapshot)? = nil) throws -> [DocumentRecord] {
        var out: [DocumentRecord] = []
        try db.scan("docs", prefix: [], snapshot: snapshot) { k, v in
            guard let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)) else { throw Self.unreadableRecord(String(decoding: k, as: UTF8.self)) }
            out.append(d)
            return true
        }
        return out
    }

    public func window(_ doc: DocumentRecord, _ w: Int, snapshot: (any StoreSnapshot)? = nil) throws -> WindowRecord {
        guard let raw = try db.get("windows", Self.windowKey(doc.number, w), snapshot: snapshot) else {
            throw StoreError.missingRecord(document: doc.id, window: w, layer: nil, what: "window record")
        }
        guard let r = try? JSONDecoder().decode(WindowRecord.self, from: Data(raw)) else {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil, reason: "window record is not valid JSON")
        }
        return r
    }

    /// The window's K/V records for every layer, checksums verified; with `expect` (the
    /// window's anchors x the model's kv_dim) a record of another shape is refused before it is decoded.
    public func loadKV(_ doc: DocumentRecord, window w: Int, layers: Int, expect: TensorCodec.Shape? = nil,
                       snapshot: (any StoreSnapshot)? = nil) throws -> [TensorRecord] {
        var out: [TensorRecord] = []
        out.reserveCapacity(layers)
        for l in 0..<layers { out.append(try loadKV(doc, window: w, layer: l, expect: expect, snapshot: snapshot)) }
        return out
    }

    /// One layer's KV record of a window, decoded (checked against `expect` when given).
    public func loadKV(_ doc: DocumentRecord, window w: Int, layer l: Int, expect: TensorCodec.Shape? = nil,
                       snapshot: (any StoreSnapshot)? = nil) throws -> TensorRecord {
        guard let raw = try db.get("kv", Self.kvKey(doc.number, w, ratio: doc.ratio, layer: l), snapshot: snapshot) else {
            throw StoreError.missingRecord(document: doc.id, window: w, layer: l, what: "KV record")
        }
        do { return try raw.withUnsafeBytes { try TensorCodec.decode($0, expect: expect) } } catch {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: l, reason: "\(error)")
        }
    }

    /// One layer's KV record exactly as stored (for snapshots: copied byte for byte, so
    /// tensors round-trip identically), its checksum verified.
    public func rawKV(_ doc: DocumentRecord, window w: Int, layer l: Int, snapshot: (any StoreSnapshot)? = nil) throws -> [UInt8] {
        guard let raw = try db.get("kv", Self.kvKey(doc.number, w, ratio: doc.ratio, layer: l), snapshot: snapshot) else {
            throw StoreError.missingRecord(document: doc.id, window: w, layer: l, what: "KV record")
        }
        do { try raw.withUnsafeBytes { try TensorCodec.verify($0) } } catch {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: l, reason: "\(error)")
        }
        return raw
    }

    /// How many layers of KV a window holds (counted from its keys).
    public func layerCount(of doc: DocumentRecord, snapshot: (any StoreSnapshot)? = nil) throws -> Int {
        try db.keys("kv", prefix: Self.windowKey(doc.number, 0) + Self.be16(doc.ratio), snapshot: snapshot).count
    }

    /// The KV dimensions every record of this store has: the manifest's, or for a store made
    /// before they were recorded, those of its first document; nil for such a store when empty.
    public func modelShape(snapshot: (any StoreSnapshot)? = nil) throws -> ModelShape? {
        if let s = manifest.shape { return s }
        // The first document whose first record checks out (a damaged one must not stop the
        // import or re-ingest that would repair it).
        var found: ModelShape?
        try db.scan("docs", prefix: [], snapshot: snapshot) { _, v in
            guard let doc = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)),
                  let raw = try? rawKV(doc, window: 0, layer: 0, snapshot: snapshot),
                  let cols = try? raw.withUnsafeBytes({ try TensorCodec.header($0).cols }) else { return true }
            found = ModelShape(layers: try layerCount(of: doc, snapshot: snapshot), kvDim: cols)
            return false
        }
        return found
    }

    /// What is wrong with a stored document, or nil when it is whole: every window record there
    /// and readable, laid out one after another and adding up to the record's tokens; exactly the
    /// model's layer count of KV records per window at the document's ratio and none at another,
    /// each passing TensorCodec's checks (CRC32C, sizes, the shape its window and the model give)
    /// with anchor positions ascending inside the window; and every index posting of its terms.
    /// Ingest and import call it before calling a same-content document "unchanged", so that
    /// re-ingesting (or importing) a damaged document writes it again. `shape` defaults to the
    /// manifest's; without one the records' checksums and per-window layer counts are checked.
    public func damage(of doc: DocumentRecord, shape: ModelShape? = nil, snapshot: (any StoreSnapshot)? = nil) throws -> String? {
        func reason(_ e: Error) -> String {
            if case StoreError.corruptRecord(_, _, _, let r) = e { return r }
            if case StoreError.missingRecord(_, _, _, let what) = e { return "\(what) is missing" }
            return "\(e)"
        }
        let shape = shape ?? manifest.shape
        guard doc.windows > 0, Self.ratios.contains(doc.ratio) else { return "the record claims \(doc.windows) windows at ratio \(doc.ratio)" }
        var tokens = 0
        var layers = shape?.layers
        for w in 0..<doc.windows {
            let win: WindowRecord
            do { win = try window(doc, w, snapshot: snapshot) } catch let e as StoreError { return "window \(w): \(reason(e))" }
            guard !win.tokens.isEmpty, win.start == tokens else { return "window \(w) holds \(win.tokens.count) tokens from \(win.start), not from \(tokens)" }
            let length = win.tokens.count
            tokens += length
            let present = try db.keys("kv", prefix: Self.windowKey(doc.number, w) + Self.be16(doc.ratio), snapshot: snapshot).count
            let n = layers ?? present
            layers = n
            guard present == n, n > 0 else { return "window \(w) holds \(present) layers of KV, not \(n)" }
            let expect = shape.map { TensorCodec.Shape(rows: Self.anchorCount(windowLength: length, ratio: doc.ratio), cols: $0.kvDim) }
            for l in 0..<n {
                guard let raw = try db.get("kv", Self.kvKey(doc.number, w, ratio: doc.ratio, layer: l), snapshot: snapshot) else {
                    return "window \(w) layer \(l): KV record is missing"
                }
                do {
                    if l == 0 {
                        let local = try raw.withUnsafeBytes { try TensorCodec.positions($0, expect: expect) }.map { Int($0) - win.start }
                        guard local.first.map({ $0 >= 1 }) ?? false, local.last! <= length, zip(local, local.dropFirst()).allSatisfy({ $0 < $1 }) else {
                            return "window \(w) layer 0: anchor positions are not ascending inside the window's \(length) tokens"
                        }
                    } else {
                        try raw.withUnsafeBytes { try TensorCodec.verify($0, expect: expect) }
                    }
                } catch { return "window \(w) layer \(l): \(error)" }
            }
            let termCount = win.termCount
            for (term, tf) in win.terms {
                let v = try db.get("lex", Self.lexKey(term, doc.number, w), snapshot: snapshot)
                guard let v, v.count == 8,
                      v.withUnsafeBytes({ Int($0.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == tf && Int($0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == termCount })
                else { return "window \(w): the index entry of term '\(term)' is missing or damaged" }
            }
        }
        guard tokens == doc.tokens else { return "its windows hold \(tokens) tokens, the record says \(doc.tokens)" }
        let all = try db.keys("kv", prefix: Self.be64(doc.number), snapshot: snapshot).count
        guard all == doc.windows * (layers ?? 0) else { return "\(all) KV records are stored under it, \(doc.windows) windows x \(layers ?? 0) layers expected" }
        return nil
    }

    /// Anchors of a window of `length` tokens at `ratio`: the encoder's uniform rule
    /// (SAC's `UniformAnchors.count`: ceil((L - o) / r) with o = (r - 1) / 2, at least 1).
    /// Every stored window has this many; a test keeps the two in step.
    public static func anchorCount(windowLength length: Int, ratio: Int) -> Int {
        let o = (ratio - 1) / 2
        return length <= o ? 1 : (length - o + ratio - 1) / ratio
    }

    /// Ratios a store can hold: the kv key keeps the ratio in 16 bits.
    public static let ratios = 1...Int(UInt16.max)

    /// Postings of one term.
    public func postings(_ term: String, snapshot: (any StoreSnapshot)? = nil) throws -> [Posting] {
        var out: [Posting] = []
        let prefix = Array(term.utf8) + [0]
        try db.scan("lex", prefix: prefix, snapshot: snapshot) { k, v in
            guard k.count == prefix.count + 12, v.count == 8 else { throw StoreError.corrupt("bad index entry for term '\(term)'") }
            out.append(Posting(document: Self.readBE(k, prefix.count, 8), window: Int(Self.readBE(k, prefix.count + 8, 4)),
                               termFrequency: Int(v.loadUnaligned(fromByteOffset: 0, as: UInt32.self)), windowLength: Int(v.loadUnaligned(fromByteOffset: 4, as: UInt32.self))))
            return true
        }
        return out
    }

    /// Totals kept in every write's batch: the BM25 index's (windows and their summed length)
    /// and the store's (readable documents, their tokens, anchors and KV bytes), so statistics,
    /// /metrics and paging never scan the records.
    public struct LexStats: Codable, Sendable, Equatable {
        public var windows = 0
        public var totalLength = 0
        public var documents = 0
        public var tokens = 0
        public var anchors = 0
        public var kvBytes = 0
        /// False in stores written before the counters and the number index were kept: they are
        /// built once when such a store is opened (`upgradeIndexes`).
        public var counted = false

        public init() {}
        enum CodingKeys: String, CodingKey { case windows, totalLength, documents, tokens, anchors, kvBytes, counted }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            windows = try c.decode(Int.self, forKey: .windows)
            totalLength = try c.decode(Int.self, forKey: .totalLength)
            documents = try c.decodeIfPresent(Int.self, forKey: .documents) ?? 0
            tokens = try c.decodeIfPresent(Int.self, forKey: .tokens) ?? 0
            anchors = try c.decodeIfPresent(Int.self, forKey: .anchors) ?? 0
            kvBytes = try c.decodeIfPresent(Int.self, forKey: .kvBytes) ?? 0
            counted = try c.decodeIfPresent(Bool.self, forKey: .counted) ?? false
        }

        mutating func add(_ d: DocumentRecord, sign: Int = 1) {
            documents += sign; tokens += sign * d.tokens; anchors += sign * d.anchors; kvBytes += sign * d.kvBytes
        }
    }

    public func lexStats(snapshot: (any StoreSnapshot)? = nil) throws -> LexStats {
        guard let raw = try db.get("meta", Array("lexstats".utf8), snapshot: snapshot) else { return LexStats() }
        return (try? JSONDecoder().decode(LexStats.self, from: Data(raw))) ?? LexStats()
    }

    static func numberKey(_ n: UInt64) -> [UInt8] { Array("num/".utf8) + be64(n) }

    /// The record of the document with number `n` (what postings name), nil when none has it.
    public func document(number n: UInt64, snapshot: (any StoreSnapshot)? = nil) throws -> DocumentRecord? {
        guard let id = try db.get("meta", Self.numberKey(n), snapshot: snapshot) else { return nil }
        guard let d = try document(String(decoding: id, as: UTF8.self), snapshot: snapshot), d.number == n else { return nil }
        return d
    }

    /// Documents in id order, `offset` skipped, at most `limit`: one page, read by a bounded scan.
    public func documents(limit: Int, offset: Int, snapshot: (any StoreSnapshot)? = nil) throws -> [DocumentRecord] {
        var out: [DocumentRecord] = []
        var skipped = 0
        guard limit > 0 else { return [] }
        try db.scan("docs", prefix: [], snapshot: snapshot) { k, v in
            if skipped < offset { skipped += 1; return true }
            guard let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)) else { throw Self.unreadableRecord(String(decoding: k, as: UTF8.self)) }
            out.append(d)
            return out.count < limit
        }
        return out
    }

    /// Builds the number index and the counters of a store written before they were kept, in
    /// one batch (a scan of the document records, once).
    func upgradeIndexes() throws {
        writeLock.lock(); defer { writeLock.unlock() }
        var stats = try lexStats()
        guard !stats.counted else { return }
        let b = db.makeBatch()
        (stats.documents, stats.tokens, stats.anchors, stats.kvBytes) = (0, 0, 0, 0)
        try db.scan("docs", prefix: []) { k, v in
            if let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)) {
                stats.add(d)
                b.put("meta", Self.numberKey(d.number), [UInt8](k))
            }
            return true
        }
        stats.counted = true
        b.put("meta", Array("lexstats".utf8), try Self.json(stats))
        try db.write(b)
    }

    /// The counters over the readable records, counted again: after a damaged record (whose
    /// sizes went with it) was replaced or deleted. `excluding` ids are left out, `adding` counted.
    private func recount(excluding: Set<String>, adding: [DocumentRecord], into stats: inout LexStats) throws {
        (stats.documents, stats.tokens, stats.anchors, stats.kvBytes) = (0, 0, 0, 0)
        try db.scan("docs", prefix: []) { k, v in
            if !excluding.contains(String(decoding: k, as: UTF8.self)), let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)) { stats.add(d) }
            return true
        }
        for d in adding { stats.add(d) }
    }

    // MARK: writes

    /// Stores a document, replacing any earlier version with the same id, in one atomic batch.
    /// Returns the stored record (with its number and byte count).
    /// `adapters` (ratio -> fingerprint, "none" for training-free anchors) registers the adapter
    /// the document was encoded with in the same batch, so a crash never leaves one without the other.
    @discardableResult
    public func put(_ write: DocumentWrite, adapters: [String: String] = [:]) throws -> DocumentRecord {
        guard write.windows.count == write.kv.count, write.windows.count == write.record.windows else {
            throw StoreError.invalidInput("document '\(write.record.id)': \(write.windows.count) windows, \(write.kv.count) KV lists, record says \(write.record.windows)")
        }
        let (encoded, _) = encode(write.kv)  // outside the lock: it is the slow part
        return try putEncoded([EncodedDocument(record: write.record, windows: write.windows, kv: encoded)], adapters: adapters)[0]
    }

    /// Stores many documents whose KV is already encoded (snapshot import) in ONE atomic batch:
    /// either all of them are visible afterwards or none. `adapters` (ratio -> fingerprint) are
    /// merged into the manifest in the same batch; a ratio the store holds with another adapter
    /// is refused before anything is written.
    /// `shape` (what the records were checked against) is recorded when the store has none yet.
    @discardableResult
    public func putEncoded(_ docs: [EncodedDocument], adapters: [String: String], shape: ModelShape? = nil) throws -> [DocumentRecord] {
        for d in docs { try Self.checkCounts(d) }
        guard Set(docs.map(\.record.id)).count == docs.count else { throw StoreError.invalidInput("a document id appears twice in one write") }
        writeLock.lock(); defer { writeLock.unlock() }
        let b = db.makeBatch()
        let m = try merged(adapters: adapters, shape: shape, into: b)
        var stats = try lexStats()
        var number = try nextNumber()
        var stored: [DocumentRecord] = []
        var sweep = false
        for d in docs {
            sweep = try deleteCurrent(d.record.id, in: b, stats: &stats) || sweep
            var record = d.record
            record.number = number
            record.kvBytes = d.kv.joined().reduce(0) { $0 + $1.count }
            number += 1
            try putWindowsAndKV(record, d, in: b)
            try index(record, windows: d.windows.map { ($0.terms, $0.termCount) }, in: b, stats: &stats)
            stored.append(record)
        }
        if sweep {
            try deleteOrphans(in: b, stats: &stats)
            try recount(excluding: Set(docs.map(\.record.id)), adding: stored, into: &stats)
        }
        b.put("meta", Array("next_doc".utf8), Self.be64(number))
        b.put("meta", Array("lexstats".utf8), try Self.json(stats))
        try db.write(b)
        setManifest(m)
        return stored
    }

    static func checkCounts(_ d: EncodedDocument) throws {
        guard d.windows.count == d.kv.count, d.windows.count == d.record.windows else {
            throw StoreError.invalidInput("document '\(d.record.id)': \(d.windows.count) windows, \(d.kv.count) KV lists, record says \(d.record.windows)")
        }
    }

    /// The manifest with `adapters` (ratio -> fingerprint) and `shape` merged in, its write added
    /// to `b` when it changed; a ratio held with another adapter, or another shape, is refused.
    private func merged(adapters: [String: String], shape: ModelShape?, into b: RocksDB.WriteBatch) throws -> StoreManifest {
        var m = manifest
        for (ratio, fp) in adapters {
            if let existing = m.adapters[ratio], existing != fp {
                throw StoreError.invalidInput("the store holds ratio \(ratio) KV made with adapter \(existing); the new data uses \(fp). Use another store")
            }
            m.adapters[ratio] = fp
        }
        if let shape {
            if let recorded = m.shape, recorded != shape { throw StoreError.shapeMismatch(path: path, store: recorded, model: shape) }
            m.shape = shape
        }
        if m != manifest { b.put("meta", Array("manifest".utf8), try Self.json(m)) }
        return m
    }

    /// The next free document number: past the stored counter and past every number this
    /// process staged (staging does not move the stored counter, so an abandoned import leaves
    /// the store byte for byte as it was). Called under writeLock.
    private func nextNumber() throws -> UInt64 {
        let stored = (try db.get("meta", Array("next_doc".utf8))).map { $0.withUnsafeBytes { Self.readBE($0, 0, 8) } } ?? 1
        return max(stored, reservedNumbers.withLock { $0 })
    }
    private let reservedNumbers = Mutex<UInt64>(0)

    /// Adds the deletion of the stored version of `id` to `b`; true when that version's record was
    /// unreadable (its number went with it, so the caller sweeps orphans).
    private func deleteCurrent(_ id: String, in b: RocksDB.WriteBatch, stats: inout LexStats) throws -> Bool {
        switch try stored(id) {
        case .whole(let old): try deleteKeys(of: old, in: b, stats: &stats); return false
        case .unreadable: return true
        case .absent: return false
        }
    }

    /// The window and KV records of `record` (its number already assigned): reached only through
    /// its document record and index entries, so on their own they are invisible to readers.
    private func putWindowsAndKV(_ record: DocumentRecord, _ d: EncodedDocument, in b: RocksDB.WriteBatch) throws {
        for (w, win) in d.windows.enumerated() {
            b.put("windows", Self.windowKey(record.number, w), try Self.json(win))
            for (l, rec) in d.kv[w].enumerated() { b.put("kv", Self.kvKey(record.number, w, ratio: record.ratio, layer: l), rec) }
        }
    }

    /// What makes a document visible: its index entries, its record, the number index and the counters.
    private func index(_ record: DocumentRecord, windows: [(terms: [String: Int], length: Int)], in b: RocksDB.WriteBatch,
                       stats: inout LexStats) throws {
        for (w, win) in windows.enumerated() {
            for (term, tf) in win.terms {
                var v = [UInt8]()
                withUnsafeBytes(of: UInt32(tf)) { v += $0 }
                withUnsafeBytes(of: UInt32(win.length)) { v += $0 }
                b.put("lex", Self.lexKey(term, record.number, w), v)
            }
            stats.windows += 1
            stats.totalLength += win.length
        }
        b.put("docs", Array(record.id.utf8), try Self.json(record))
        b.put("meta", Self.numberKey(record.number), Array(record.id.utf8))
        stats.add(record)
    }

    // MARK: staged writes: imports larger than memory, still all-or-nothing

    static let stagingPrefix = Array("staging/".utf8)
    static func stagingKey(_ n: UInt64) -> [UInt8] { stagingPrefix + be64(n) }

    /// A document whose windows and KV are on disk under a reserved number, not yet indexed.
    struct StagedDocument {
        var record: DocumentRecord
        var windows: [(terms: [String: Int], length: Int)]
    }

    /// Starts a write of many documents that holds one document's KV in memory at a time.
    public func beginStagedWrite() -> StagedWrite { StagedWrite(store: self) }

    /// Writes one document's windows and KV under a newly reserved number with a staging marker,
    /// in their own batch. No reader reaches them until `commitStaged` indexes the number.
    fileprivate func stage(_ d: EncodedDocument) throws -> StagedDocument {
        try Self.checkCounts(d)
        writeLock.lock(); defer { writeLock.unlock() }
        let b = db.makeBatch()
        let number = try nextNumber()
        reservedNumbers.withLock { $0 = number + 1 }
        b.put("meta", Self.stagingKey(number), [])
        var record = d.record
        record.number = number
        record.kvBytes = d.kv.joined().reduce(0) { $0 + $1.count }
        try putWindowsAndKV(record, d, in: b)
        try db.write(b)
        return StagedDocument(record: record, windows: d.windows.map { ($0.terms, $0.termCount) })
    }

    /// Makes every staged document visible in ONE batch (replacing stored versions of their ids),
    /// with the adapters and shape merged into the manifest as `putEncoded` does.
    fileprivate func commitStaged(_ docs: [StagedDocument], adapters: [String: String], shape: ModelShape?) throws -> [DocumentRecord] {
        writeLock.lock(); defer { writeLock.unlock() }
        let b = db.makeBatch()
        let m = try merged(adapters: adapters, shape: shape, into: b)
        var stats = try lexStats()
        var sweep = false
        for d in docs {
            sweep = try deleteCurrent(d.record.id, in: b, stats: &stats) || sweep
            try index(d.record, windows: d.windows, in: b, stats: &stats)
            b.delete("meta", Self.stagingKey(d.record.number))
        }
        let next = max(try nextNumber(), (docs.map(\.record.number).max() ?? 0) + 1)
        b.put("meta", Array("next_doc".utf8), Self.be64(next))
        if sweep {
            try deleteOrphans(in: b, stats: &stats)
            try recount(excluding: Set(docs.map(\.record.id)), adding: docs.map(\.record), into: &stats)
        }
        b.put("meta", Array("lexstats".utf8), try Self.json(stats))
        try db.write(b)
        setManifest(m)
        return docs.map(\.record)
    }

    /// Deletes staged numbers' windows, KV and markers (an abandoned write); nil: every marker in
    /// the store (at open: what a crash in the middle of an import left).
    fileprivate func discardStaged(_ numbers: [UInt64]?) throws {
        writeLock.lock(); defer { writeLock.unlock() }
        let list = try numbers ?? Array(stagedNumbers())
        guard !list.isEmpty else { return }
        let b = db.makeBatch()
        for n in list {
            for k in try db.keys("kv", prefix: Self.be64(n)) { b.delete("kv", k) }
            for k in try db.keys("windows", prefix: Self.be64(n)) { b.delete("windows", k) }
            b.delete("meta", Self.stagingKey(n))
        }
        try db.write(b)
    }

    /// Numbers staged and not yet committed: their records are not orphans.
    private func stagedNumbers() throws -> Set<UInt64> {
        var out = Set<UInt64>()
        try db.scan("meta", prefix: Self.stagingPrefix) { k, _ in
            if k.count == Self.stagingPrefix.count + 8 { out.insert(Self.readBE(k, Self.stagingPrefix.count, 8)) }
            return true
        }
        return out
    }

    /// Deletes a document and every key under it atomically. Returns false when it was not there.
    @discardableResult
    public func delete(_ id: String) throws -> Bool {
        writeLock.lock(); defer { writeLock.unlock() }
        let b = db.makeBatch()
        var stats = try lexStats()
        switch try stored(id) {
        case .absent: return false
        case .whole(let doc): try deleteKeys(of: doc, in: b, stats: &stats)
        case .unreadable:
            try deleteOrphans(in: b, stats: &stats)
            try recount(excluding: [id], adding: [], into: &stats)
        }
        b.put("meta", Array("lexstats".utf8), try Self.json(stats))
        b.delete("docs", Array(id.utf8))
        try db.write(b)
        return true
    }

    /// One record as this store keeps it (its dtype, this process's compression policy).
    public func encode(_ record: TensorRecord) -> [UInt8] { TensorCodec.encode(record, dtype: dtype, compression: compression) }

    /// Tensor records per [window][layer] in the store's dtype and compression, and their total bytes.
    private func encode(_ kv: [[TensorRecord]]) -> (records: [[[UInt8]]], bytes: Int) {
        let records = kv.map { $0.map { encode($0) } }
        return (records, records.joined().reduce(0) { $0 + $1.count })
    }

    /// Adds deletions of every window, KV and index key whose document number no readable record
    /// owns: what a document whose record was damaged left behind (its number went with the
    /// record). A scan of the store, run only when such a record is replaced or deleted.
    private func deleteOrphans(in b: RocksDB.WriteBatch, stats: inout LexStats) throws {
        var owned = try stagedNumbers()
        try db.scan("docs", prefix: []) { _, v in
            if let d = try? JSONDecoder().decode(DocumentRecord.self, from: Data(v)) { owned.insert(d.number) }
            return true
        }
        var unknownLength = Set<[UInt8]>()  // window keys whose record could not say its length
        try db.scan("windows", prefix: []) { k, v in
            guard k.count == 12, !owned.contains(Self.readBE(k, 0, 8)) else { return true }
            b.delete("windows", [UInt8](k))
            stats.windows -= 1
            if let rec = try? JSONDecoder().decode(WindowRecord.self, from: Data(v)) { stats.totalLength -= rec.termCount } else { unknownLength.insert([UInt8](k)) }
            return true
        }
        try db.scan("kv", prefix: []) { k, _ in
            if k.count >= 8, !owned.contains(Self.readBE(k, 0, 8)) { b.delete("kv", [UInt8](k)) }
            return true
        }
        try db.scan("meta", prefix: Array("num/".utf8)) { k, _ in
            if k.count == 12, !owned.contains(Self.readBE(k, 4, 8)) { b.delete("meta", [UInt8](k)) }
            return true
        }
        try db.scan("lex", prefix: []) { k, v in
            guard k.count >= 13, k[k.count - 13] == 0, !owned.contains(Self.readBE(k, k.count - 12, 8)) else { return true }
            b.delete("lex", [UInt8](k))
            let window = [UInt8](k[(k.count - 12)...])
            if unknownLength.remove(window) != nil, v.count == 8 { stats.totalLength -= Int(v.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
            return true
        }
    }

    /// Adds deletions of every window, KV and index key of `doc` to the batch.
    private func deleteKeys(of doc: DocumentRecord, in b: RocksDB.WriteBatch, stats: inout LexStats) throws {
        let prefix = Self.be64(doc.number)
        stats.add(doc, sign: -1)
        b.delete("meta", Self.numberKey(doc.number))
        for k in try db.keys("kv", prefix: prefix) { b.delete("kv", k) }
        var windows: [(Int, WindowRecord)] = []
        var lost = Set(0..<max(doc.windows, 0))
        try db.scan("windows", prefix: prefix) { k, v in
            let w = Int(Self.readBE(k, 8, 4))
            lost.remove(w)
            if let rec = try? JSONDecoder().decode(WindowRecord.self, from: Data(v)) {
                windows.append((w, rec))
            } else {
                b.delete("windows", [UInt8](k))  // damaged: its postings are found below
                lost.insert(w)
            }
            return true
        }
        for (w, rec) in windows {
            b.delete("windows", Self.windowKey(doc.number, w))
            for term in rec.terms.keys { b.delete("lex", Self.lexKey(term, doc.number, w)) }
            stats.windows -= 1
            stats.totalLength -= rec.termCount
        }
        // A window record that is damaged or missing no longer names its terms: its postings are
        // found by scanning the index for the document's number (a repair, so rare), and each
        // posting carries the window length the totals need.
        guard !lost.isEmpty else { return }
        var lengths: [Int: Int] = [:]
        try db.scan("lex", prefix: []) { k, v in
            guard k.count >= 13, k[k.count - 13] == 0, Self.readBE(k, k.count - 12, 8) == doc.number else { return true }
            let w = Int(Self.readBE(k, k.count - 4, 4))
            guard lost.contains(w) else { return true }
            b.delete("lex", [UInt8](k))
            if v.count == 8 { lengths[w] = Int(v.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
            return true
        }
        for w in lost {
            stats.windows -= 1
            stats.totalLength -= lengths[w] ?? 0
        }
    }

    /// Swaps a document's KV for new ones at another ratio (compaction), atomically: the old
    /// ratio's records go, the new ones and the updated record arrive in one batch. Refused when
    /// the document changed (re-ingested, deleted, compacted) since `expected` was read.
    public func replaceKV(of expected: DocumentRecord, ratio: Int, adapter: String?, kv: [[TensorRecord]], anchors: Int) throws -> (before: Int, after: Int) {
        let (encoded, after) = encode(kv)
        writeLock.lock(); defer { writeLock.unlock() }
        guard var doc = try document(expected.id) else { throw StoreError.invalidInput("document '\(expected.id)' is gone") }
        guard doc == expected, kv.count == doc.windows else {
            throw StoreError.invalidInput("document '\(expected.id)' changed while it was being re-encoded")
        }
        let before = doc.kvBytes
        let b = db.makeBatch()
        // The new ratio's adapter is registered in the same batch as the first document using it.
        var m = manifest
        let fp = adapter ?? "none"
        if let existing = m.adapters[String(ratio)], existing != fp {
            throw StoreError.adapterConflict(ratio: ratio, stored: existing, requested: fp)
        }
        m.adapters[String(ratio)] = fp
        if m != manifest { b.put("meta", Array("manifest".utf8), try Self.json(m)) }
        for k in try db.keys("kv", prefix: Self.be64(doc.number)) { b.delete("kv", k) }
        for (w, recs) in encoded.enumerated() {
            for (l, rec) in recs.enumerated() { b.put("kv", Self.kvKey(doc.number, w, ratio: ratio, layer: l), rec) }
        }
        var stats = try lexStats()
        stats.add(doc, sign: -1)
        doc.ratio = ratio
        doc.adapter = adapter
        doc.kvBytes = after
        doc.anchors = anchors
        stats.add(doc)
        b.put("docs", Array(doc.id.utf8), try Self.json(doc))
        b.put("meta", Array("lexstats".utf8), try Self.json(stats))
        try db.write(b)
        setManifest(m)
        return (before, after)
    }

    /// Runs RocksDB's own compaction over every column family so that space held by deleted
    /// or overwritten records is returned to the file system.
    public func compactStorage() {
        for f in Self.families { db.compact(f) }
    }

    /// Bytes of the store's folder on disk (SST files, WAL, manifest).
    public func diskBytes() -> Int {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: path) else { return 0 }
        return names.reduce(0) { sum, n in
            sum + ((try? fm.attributesOfItem(atPath: (path as NSString).appendingPathComponent(n))[.size] as? Int) ?? 0)
        }
    }

    /// The store's totals (kept in every write's batch: no scan); `logicalBytes` also reads every
    /// family's keys and values.
    public func stats(logicalBytes: Bool = true, snapshot: (any StoreSnapshot)? = nil) throws -> StoreStats {
        var s = StoreStats()
        let t = try lexStats(snapshot: snapshot)
        (s.documents, s.windows, s.tokens, s.anchors, s.kvBytes) = (t.documents, t.windows, t.tokens, t.anchors, t.kvBytes)
        for f in Self.families where logicalBytes {
            var n = 0
            try db.scan(f, prefix: []) { k, v in n += k.count + v.count; return true }
            s.logicalBytes[f] = n
        }
        return s
    }
}

/// A write of many documents in bounded memory that stays all-or-nothing (snapshot import):
/// `add` puts each document's windows and KV on disk at once under a reserved number that no
/// reader can reach; `commit` then makes all of them visible in one batch. `abandon` (also on
/// deinit without a commit, and at the store's next open after a crash) deletes what was staged.
/// Memory: one document's KV while it is added, then a few bytes per window and index term.
public final class StagedWrite {
    public let store: KVStore
    private var docs: [KVStore.StagedDocument] = []
    private var ids = Set<String>()
    private var finished = false
    public var count: Int { docs.count }

    init(store: KVStore) { self.store = store }

    public func add(_ d: EncodedDocument) throws {
        precondition(!finished, "StagedWrite used after commit or abandon")
        guard ids.insert(d.record.id).inserted else { throw StoreError.invalidInput("document '\(d.record.id)' appears twice in one write") }
        docs.append(try store.stage(d))
    }

    @discardableResult
    public func commit(adapters: [String: String], shape: ModelShape? = nil) throws -> [DocumentRecord] {
        precondition(!finished, "StagedWrite committed twice")
        let stored = try store.commitStaged(docs, adapters: adapters, shape: shape)
        finished = true
        return stored
    }

    /// Deletes what was staged. Failing here only leaves the markers for the next open to clear.
    public func abandon() {
        guard !finished else { return }
        finished = true
        try? store.discardStaged(docs.map(\.record.number))
    }

    /// Drops the write without deleting what it staged, as a crash would (tests of recovery).
    func detach() { finished = true }

    deinit { abandon() }
}
