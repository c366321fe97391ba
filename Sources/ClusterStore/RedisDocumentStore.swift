import Dispatch
import Foundation
import KVStore
import RedisCluster
import Synchronization

/// The Redis Cluster store behind the knowledge base's store interface (`DocumentStore`),
/// whose callers are synchronous: each call runs the async client and waits for it. Callers
/// are the CLI's main thread and the service's blocking-work threads, never a Swift
/// concurrency thread (waiting there could starve the client's own tasks).
public final class RedisDocumentStore: DocumentStore {
    public let store: RedisStore
    public let location: String
    /// Document numbers (what postings name) to their records, filled by `postings`: a number
    /// names one immutable version, so an entry never goes stale.
    private let byNumber = Mutex<[UInt64: DocumentRecord]>([:])
    /// Writes that were stored but reached fewer replicas than required (since open).
    public let degradedWrites = Atomic<Int>(0)

    /// Documents stored on fewer replicas than required, kept on local disk (a RocksDB store of
    /// the same model) and written to the cluster again until a write of them is acknowledged.
    /// Opened (created) on the first write that needs it.
    public var outbox: KVStore? { openOutbox(create: false) }
    public let outboxPath: String?
    private let openedOutbox = Mutex<KVStore?>(nil)
    private let lastOutboxRetry = Mutex<ContinuousClock.Instant?>(nil)
    static let outboxRetryInterval: Duration = .seconds(30)

    public init(store: RedisStore, location: String, outboxPath: String? = nil) {
        self.store = store
        self.location = location
        self.outboxPath = outboxPath
    }

    private func openOutbox(create: Bool) -> KVStore? {
        guard let outboxPath else { return nil }
        return openedOutbox.withLock { opened in
            if let opened { return opened }
            let exists = FileManager.default.fileExists(atPath: (outboxPath as NSString).appendingPathComponent("CURRENT"))
            guard exists || create else { return nil }
            let m = store.manifest
            opened = try? KVStore(path: outboxPath, modelFingerprint: m.modelFingerprint, modelName: m.modelName, create: true,
                                  dtype: TensorDType(name: m.dtype) ?? .f16, shape: m.shape)
            return opened
        }
    }

    /// Connects to the cluster at `seeds` and opens knowledge base `name` (see `RedisStore.open`).
    /// `outboxPath`: the folder of the outbox (created on the first write that needs it); the
    /// documents waiting there are written again now.
    public static func open(seeds: [RedisNodeAddress], name: String, password: String?, modelFingerprint: String?, modelName: String?,
                            create: Bool, dtype: TensorDType = .f16, shape: ModelShape? = nil, location: String, outboxPath: String? = nil,
                            options: RedisStore.Options = RedisStore.Options()) throws -> RedisDocumentStore {
        var clientOptions = RedisClusterClient.Options()
        clientOptions.password = password
        let client = RedisClusterClient(seeds: seeds, options: clientOptions)
        let store = try blocking {
            let s = try await RedisStore.open(client: client, knowledgeBase: name, modelFingerprint: modelFingerprint, modelName: modelName,
                                              create: create, dtype: dtype, shape: shape, options: options)
            _ = try await s.refreshAdapters()
            return s
        }
        let s = RedisDocumentStore(store: store, location: location, outboxPath: outboxPath)
        _ = try? s.retryOutbox()
        s.lastOutboxRetry.withLock { $0 = .now }
        return s
    }

    /// Writes the outbox's documents to the cluster again; each one acknowledged leaves the
    /// outbox. A document the cluster meanwhile holds in another or later version is dropped
    /// from the outbox (the later write wins), as is one deleted through this store. Returns
    /// how many remain.
    @discardableResult
    public func retryOutbox() throws -> Int {
        guard let outbox else { return 0 }
        let waiting = try outbox.documents()
        for doc in waiting {
            let current = try document(doc.id, snapshot: nil)
            if let current, current.contentHash != doc.contentHash || current.ingestedAt > doc.ingestedAt {
                try outbox.delete(doc.id)
                continue
            }
            let layers = try outbox.layerCount(of: doc)
            var windows: [WindowRecord] = [], kv: [[[UInt8]]] = []
            for w in 0..<doc.windows {
                windows.append(try outbox.window(doc, w))
                kv.append(try (0..<layers).map { try outbox.rawKV(doc, window: w, layer: $0) })
            }
            var record = doc
            record.number = 0
            let encoded = EncodedDocument(record: record, windows: windows, kv: kv)
            let adapters = [String(doc.ratio): doc.adapter ?? "none"]
            guard let r = try? blocking({ try await self.store.put([encoded], adapters: adapters) }), r.allSatisfy(\.acknowledged) else {
                break  // still short of replicas: the rest would wait for WAIT in vain
            }
            try outbox.delete(doc.id)
        }
        return try outbox.lexStats().documents
    }


    public var manifest: StoreManifest { store.manifest }
    public func snapshot() -> any StoreSnapshot { View() }

    /// Reads on a cluster need no snapshot: a manifest names one immutable version. A view
    /// keeps the last window's KV read through it, so that reading it layer by layer (snapshot
    /// export) fetches it once.
    final class View: StoreSnapshot {
        let lastWindow = Mutex<(number: UInt64, window: Int, layers: [[UInt8]])?>(nil)
    }

    public func rawKV(_ doc: DocumentRecord, window w: Int, layer l: Int, snapshot: (any StoreSnapshot)?) throws -> [UInt8] {
        let view = snapshot as? View
        var layers = view?.lastWindow.withLock { c in c.flatMap { $0.number == doc.number && $0.window == w ? $0.layers : nil } }
        if layers == nil {
            let fetched = try blocking { try await self.store.rawKV(doc, window: w) }
            view?.lastWindow.withLock { $0 = (doc.number, w, fetched) }
            layers = fetched
        }
        guard let layers, l < layers.count else { throw StoreError.missingRecord(document: doc.id, window: w, layer: l, what: "KV record") }
        return layers[l]
    }

    public func layerCount(of doc: DocumentRecord, snapshot: (any StoreSnapshot)?) throws -> Int {
        try blocking { try await self.store.rawKV(doc, window: 0).count }
    }

    public func modelShape(snapshot: (any StoreSnapshot)?) throws -> ModelShape? { manifest.shape }

    public func beginBatchWrite() -> any DocumentBatchWrite { BatchWrite(store: self) }

    /// Each document staged (keys and postings written, invisible) as it is added; committed one
    /// by one, in order, at `commit`; what was staged is deleted on `abandon`.
    final class BatchWrite: DocumentBatchWrite {
        let store: RedisDocumentStore
        private var staged: [RedisStore.StagedDocument] = []
        private var ids = Set<String>()
        private var finished = false
        var count: Int { staged.count }
        init(store: RedisDocumentStore) { self.store = store }

        func add(_ d: EncodedDocument) throws {
            precondition(!finished, "a batch write used after commit or abandon")
            guard ids.insert(d.record.id).inserted else { throw StoreError.invalidInput("document '\(d.record.id)' appears twice in one write") }
            let inner = store.store
            staged.append(try blocking { try await inner.stage(d) })
        }

        func commit(adapters: [String: String], shape: ModelShape?) throws -> [DocumentRecord] {
            precondition(!finished, "a batch write committed twice")
            let inner = store.store, docs = staged
            let results = try blocking { () async throws -> [RedisStore.PutResult] in
                try await inner.register(adapters: adapters)
                var out: [RedisStore.PutResult] = []
                for s in docs { out.append(try await inner.commit(s)) }
                return out
            }
            finished = true
            try store.check(results)
            return results.map(\.record)
        }

        func abandon() {
            guard !finished else { return }
            finished = true
            let inner = store.store, docs = staged
            _ = try? blocking { for s in docs { try await inner.discard(s) } }
        }

        deinit { abandon() }
    }

    public func stored(_ id: String, snapshot: (any StoreSnapshot)?) throws -> KVStore.StoredDocument {
        do {
            return try document(id, snapshot: snapshot).map { .whole($0) } ?? .absent
        } catch StoreError.corrupt {
            return .unreadable
        }
    }

    public func document(_ id: String, snapshot: (any StoreSnapshot)?) throws -> DocumentRecord? {
        try blocking { try await self.store.document(id) }
    }

    public func document(number n: UInt64, snapshot: (any StoreSnapshot)?) throws -> DocumentRecord? {
        byNumber.withLock { $0[n] }
    }

    public func documents(snapshot: (any StoreSnapshot)?) throws -> [DocumentRecord] {
        try blocking { try await self.store.documents() }
    }

    public func documents(limit: Int, offset: Int, snapshot: (any StoreSnapshot)?) throws -> [DocumentRecord] {
        Array(try documents(snapshot: snapshot).dropFirst(offset).prefix(limit))
    }

    public func window(_ doc: DocumentRecord, _ w: Int, snapshot: (any StoreSnapshot)?) throws -> WindowRecord {
        try blocking { try await self.store.window(doc, w) }
    }

    public func loadKV(_ doc: DocumentRecord, window w: Int, layers: Int, expect: TensorCodec.Shape?,
                       snapshot: (any StoreSnapshot)?) throws -> [TensorRecord] {
        let records = try blocking { try await self.store.loadKV(doc, window: w, expect: expect) }
        guard records.count == layers else {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil, reason: "\(records.count) layers of KV, the model has \(layers)")
        }
        return records
    }

    public func loadKV(_ doc: DocumentRecord, window w: Int, layer l: Int, expect: TensorCodec.Shape?,
                       snapshot: (any StoreSnapshot)?) throws -> TensorRecord {
        let records = try blocking { try await self.store.loadKV(doc, window: w, expect: expect) }
        guard l < records.count else { throw StoreError.missingRecord(document: doc.id, window: w, layer: l, what: "KV record") }
        return records[l]
    }

    public func postings(_ term: String, snapshot: (any StoreSnapshot)?) throws -> [Posting] {
        let found = try blocking { try await self.store.postings(term) }
        byNumber.withLock { cache in
            if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
            for (record, _) in found { cache[record.number] = record }
        }
        return found.map(\.1)
    }

    public func lexStats(snapshot: (any StoreSnapshot)?) throws -> KVStore.LexStats {
        try blocking { try await self.store.lexStats() }
    }

    /// Every window record readable and every layer's KV there with its checksum: what a
    /// re-ingest of unchanged text checks before calling the stored copy whole.
    public func damage(of doc: DocumentRecord, shape: ModelShape?, snapshot: (any StoreSnapshot)?) throws -> String? {
        let layers = shape?.layers ?? manifest.shape?.layers
        return try blocking {
            for w in 0..<doc.windows {
                do {
                    _ = try await self.store.window(doc, w)
                    let kv = try await self.store.rawKV(doc, window: w)
                    if let layers, kv.count != layers { return "window \(w) holds \(kv.count) layers of KV, the model has \(layers)" }
                } catch let e as StoreError {
                    return "\(e)"
                }
            }
            return nil
        }
    }

    public func checkAdapter(ratio: Int, fingerprint: String?) throws {
        let fp = fingerprint ?? "none"
        if let existing = manifest.adapters[String(ratio)], existing != fp {
            throw StoreError.adapterConflict(ratio: ratio, stored: existing, requested: fp)
        }
    }

    public func encode(_ record: TensorRecord) -> [UInt8] {
        TensorCodec.encode(record, dtype: TensorDType(name: manifest.dtype) ?? .f16, compression: .none)
    }

    /// Stores each document whole or not at all. A document stored on fewer replicas than
    /// required is visible but not acknowledged: counted in `degradedWrites` and thrown as
    /// `StoreError.notReplicated`, so the caller can write it again.
    public func putEncoded(_ docs: [EncodedDocument], adapters: [String: String], shape: ModelShape?) throws -> [DocumentRecord] {
        // The outbox is retried with the writes, at most every `outboxRetryInterval`.
        let due = lastOutboxRetry.withLock { last in
            guard last.map({ ContinuousClock.now - $0 >= Self.outboxRetryInterval }) ?? true else { return false }
            last = .now
            return true
        }
        if due { try? retryOutbox() }
        let results = try blocking { try await self.store.put(docs, adapters: adapters) }
        try check(results, documents: docs, adapters: adapters)
        return results.map(\.record)
    }

    /// Throws `notReplicated` for writes short of replicas, after keeping those documents in
    /// the outbox (when there is one) to be written again.
    func check(_ results: [RedisStore.PutResult], documents: [EncodedDocument] = [], adapters: [String: String] = [:]) throws {
        let short = results.filter { !$0.acknowledged }
        guard !short.isEmpty else { return }
        degradedWrites.add(short.count, ordering: .relaxed)
        var kept: String?
        if let outbox = openOutbox(create: true) {
            let ids = Set(short.map(\.record.id))
            let keep = documents.filter { ids.contains($0.record.id) }.map { d in
                var e = d
                e.record.number = 0
                return e
            }
            if !keep.isEmpty, (try? outbox.putEncoded(keep, adapters: adapters)) != nil { kept = outbox.path }
        }
        throw StoreError.notReplicated(documents: short.map(\.record.id), replicas: short.map(\.replicas).min() ?? 0,
                                       required: store.options.minReplicas, outbox: kept)
    }

    @discardableResult
    public func delete(_ id: String) throws -> Bool {
        let queued = (try? outbox?.delete(id)) ?? false
        return try blocking { try await self.store.delete(id) } || queued
    }

    public func replaceKV(of expected: DocumentRecord, ratio: Int, adapter: String?, kv: [[TensorRecord]], anchors: Int) throws -> (before: Int, after: Int) {
        guard kv.count == expected.windows else { throw StoreError.invalidInput("document '\(expected.id)': \(kv.count) windows of KV, the record has \(expected.windows)") }
        var windows: [WindowRecord] = []
        for w in 0..<expected.windows { windows.append(try window(expected, w, snapshot: nil)) }
        var record = expected
        record.ratio = ratio
        record.adapter = adapter
        record.anchors = anchors
        let encoded = EncodedDocument(record: record, windows: windows, kv: kv.map { $0.map(encode) })
        let result = try blocking { try await self.store.put(encoded, adapters: [String(ratio): adapter ?? "none"], replacing: expected) }
        try check([result])
        return (expected.kvBytes, result.record.kvBytes)
    }

    /// Redis frees a key's memory when it is deleted: nothing to give back.
    public func compactStorage() {}

    public func sweep(olderThan: Duration, dryRun: Bool) throws -> SweepReport {
        try blocking { try await self.store.sweep(olderThan: olderThan, dryRun: dryRun) }
    }

    public func stats(logicalBytes: Bool, snapshot: (any StoreSnapshot)?) throws -> StoreStats {
        let s = try lexStats(snapshot: snapshot)
        var out = StoreStats()
        (out.documents, out.windows, out.tokens, out.anchors, out.kvBytes) = (s.documents, s.windows, s.tokens, s.anchors, s.kvBytes)
        return out
    }

    /// The memory of the cluster's data set (every knowledge base on it), from INFO memory.
    public func diskBytes() -> Int {
        (try? blocking { () async throws -> Int in
            var total = 0
            for node in try await self.store.client.currentTopology().masters {
                guard case .bulkString(let b?) = try await self.store.client.run(["INFO", "memory"], on: node) else { continue }
                for line in String(decoding: b, as: UTF8.self).split(whereSeparator: \.isNewline) where line.hasPrefix("used_memory_dataset:") {
                    total += Int(line.dropFirst("used_memory_dataset:".count)) ?? 0
                }
            }
            return total
        }) ?? 0
    }
}

/// Runs async work to completion from a thread that may block, and returns its result.
/// The work (and what it captures: stores, clients) is released before the caller wakes, so a
/// store's last reference never goes away on a task thread racing the process's exit (that
/// closed RocksDB under exit's destructors: "terminate called without an active exception").
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let work = Mutex<(@Sendable () async throws -> T)?>(body)
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let r = await run(work)
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

/// Takes the work out of its box and runs it; the closure is gone when this returns.
private func run<T: Sendable>(_ work: borrowing Mutex<(@Sendable () async throws -> T)?>) async -> Result<T, any Error> {
    guard let f = work.withLock({ w in defer { w = nil }; return w }) else { return .failure(CancellationError()) }
    do { return .success(try await f()) } catch { return .failure(error) }
}
