/// A consistent view for a query's reads: RocksDB's snapshot; on a Redis Cluster a view of
/// its own (document versions there are immutable, so reading through a manifest is consistent).
public protocol StoreSnapshot: AnyObject, Sendable {}

extension RocksDB.Snapshot: StoreSnapshot {}

/// What ingest, query, the document list, statistics and delete need of a store: the one
/// interface the knowledge base sees, kept by the embedded RocksDB store (`KVStore`) and the
/// Redis Cluster store (ClusterStore). Snapshots of one store are ignored by another.
public protocol DocumentStore: AnyObject, Sendable {
    /// Where the store is: a folder, or redis://.../NAME (for messages and statistics).
    var location: String { get }
    var manifest: StoreManifest { get }
    /// A view that every read given it sees as of now.
    func snapshot() -> any StoreSnapshot

    func stored(_ id: String, snapshot: (any StoreSnapshot)?) throws -> KVStore.StoredDocument
    func document(_ id: String, snapshot: (any StoreSnapshot)?) throws -> DocumentRecord?
    /// The record of the version numbered `n` (what postings name), nil when none has it.
    func document(number n: UInt64, snapshot: (any StoreSnapshot)?) throws -> DocumentRecord?
    func documents(limit: Int, offset: Int, snapshot: (any StoreSnapshot)?) throws -> [DocumentRecord]
    func window(_ doc: DocumentRecord, _ w: Int, snapshot: (any StoreSnapshot)?) throws -> WindowRecord
    func loadKV(_ doc: DocumentRecord, window w: Int, layers: Int, expect: TensorCodec.Shape?,
                snapshot: (any StoreSnapshot)?) throws -> [TensorRecord]
    func loadKV(_ doc: DocumentRecord, window w: Int, layer l: Int, expect: TensorCodec.Shape?,
                snapshot: (any StoreSnapshot)?) throws -> TensorRecord
    func documents(snapshot: (any StoreSnapshot)?) throws -> [DocumentRecord]
    /// One layer's KV record exactly as stored, its checksum verified (snapshots copy it byte for byte).
    func rawKV(_ doc: DocumentRecord, window w: Int, layer l: Int, snapshot: (any StoreSnapshot)?) throws -> [UInt8]
    /// How many layers of KV a document's windows hold.
    func layerCount(of doc: DocumentRecord, snapshot: (any StoreSnapshot)?) throws -> Int
    /// The KV dimensions the store's records have (nil: not recorded and nothing stored).
    func modelShape(snapshot: (any StoreSnapshot)?) throws -> ModelShape?
    func postings(_ term: String, snapshot: (any StoreSnapshot)?) throws -> [Posting]
    func lexStats(snapshot: (any StoreSnapshot)?) throws -> KVStore.LexStats
    /// What is wrong with a stored document, nil when it is whole.
    func damage(of doc: DocumentRecord, shape: ModelShape?, snapshot: (any StoreSnapshot)?) throws -> String?
    /// Refuses an adapter other than the one the store holds `ratio` with.
    func checkAdapter(ratio: Int, fingerprint: String?) throws
    /// A record in the store's dtype and compression.
    func encode(_ record: TensorRecord) -> [UInt8]
    /// Stores documents (each whole or not at all), registering their adapters.
    func putEncoded(_ docs: [EncodedDocument], adapters: [String: String], shape: ModelShape?) throws -> [DocumentRecord]
    @discardableResult func delete(_ id: String) throws -> Bool
    /// A write of many documents (snapshot import) that holds one document in memory at a time
    /// and makes them visible at `commit`.
    func beginBatchWrite() -> any DocumentBatchWrite
    /// Swaps a document's KV for KV at another ratio (compaction), refused when the document
    /// changed since `expected` was read; the KV bytes before and after.
    func replaceKV(of expected: DocumentRecord, ratio: Int, adapter: String?, kv: [[TensorRecord]], anchors: Int) throws -> (before: Int, after: Int)
    /// Gives back space held by deleted or overwritten records (RocksDB's compaction).
    func compactStorage()
    /// Removes what interrupted writes left behind and recounts the counters (a cluster store:
    /// versions no manifest names, idle for `olderThan`; postings and catalogue entries of
    /// versions that are gone). A folder store writes each document in one atomic batch and has
    /// nothing to sweep. `dryRun` reports without changing anything.
    func sweep(olderThan: Duration, dryRun: Bool) throws -> SweepReport
    func stats(logicalBytes: Bool, snapshot: (any StoreSnapshot)?) throws -> StoreStats
    /// Bytes the store takes where it lives (a folder's files; on a cluster, its keys' memory).
    func diskBytes() -> Int
}

/// What a sweep found (and removed, unless it was a dry run).
public struct SweepReport: Codable, Sendable, Equatable {
    public var dryRun = false
    /// Versions of documents that no manifest names, idle longer than the grace: removed.
    public var versionsRemoved = 0
    public var keysRemoved = 0
    /// Versions no manifest names that were written within the grace (a write may still be
    /// on its way to its commit): kept.
    public var versionsKept = 0
    public var postingsRemoved = 0
    public var catalogueEntriesRemoved = 0
    /// The counters as stored, and as recounted from the visible documents.
    public var countersBefore = KVStore.LexStats()
    public var countersAfter = KVStore.LexStats()
    public var countersFixed = false
    public init() {}
}

/// Documents added one by one, invisible until `commit`; `abandon` deletes what was added.
/// RocksDB commits all of them in one batch; a cluster commits each document atomically, in
/// order, once every one of them was added (a crash while committing leaves a prefix visible).
public protocol DocumentBatchWrite: AnyObject {
    var count: Int { get }
    func add(_ d: EncodedDocument) throws
    @discardableResult func commit(adapters: [String: String], shape: ModelShape?) throws -> [DocumentRecord]
    func abandon()
}

extension StagedWrite: DocumentBatchWrite {}

extension DocumentStore {
    public func modelShape() throws -> ModelShape? { try modelShape(snapshot: nil) }
    public func stored(_ id: String) throws -> KVStore.StoredDocument { try stored(id, snapshot: nil) }
    public func document(_ id: String) throws -> DocumentRecord? { try document(id, snapshot: nil) }
    public func documents() throws -> [DocumentRecord] { try documents(snapshot: nil) }
    public func documents(limit: Int, offset: Int) throws -> [DocumentRecord] { try documents(limit: limit, offset: offset, snapshot: nil) }
    public func window(_ doc: DocumentRecord, _ w: Int) throws -> WindowRecord { try window(doc, w, snapshot: nil) }
    public func lexStats() throws -> KVStore.LexStats { try lexStats(snapshot: nil) }
    public func damage(of doc: DocumentRecord) throws -> String? { try damage(of: doc, shape: nil, snapshot: nil) }
    public func stats(logicalBytes: Bool = true) throws -> StoreStats { try stats(logicalBytes: logicalBytes, snapshot: nil) }
    @discardableResult
    public func putEncoded(_ docs: [EncodedDocument], adapters: [String: String]) throws -> [DocumentRecord] {
        try putEncoded(docs, adapters: adapters, shape: nil)
    }
}

extension KVStore: DocumentStore {
    public var location: String { path }
    public func sweep(olderThan: Duration, dryRun: Bool) throws -> SweepReport {
        var r = SweepReport()
        r.dryRun = dryRun
        r.countersBefore = try lexStats()
        r.countersAfter = r.countersBefore
        return r
    }
    public func snapshot() -> any StoreSnapshot { db.snapshot() }
    public func beginBatchWrite() -> any DocumentBatchWrite { beginStagedWrite() }
}
