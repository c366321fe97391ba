import Foundation
import KVStore
import RedisCluster
import Synchronization

/// A knowledge base kept in a Redis Cluster (key schema: `RedisKeys`). Same records as the
/// RocksDB store (`KVStore`): DocumentRecord, WindowRecord, TensorCodec bytes, postings.
///
/// Guarantees, given Redis's own (asynchronous replication; WAIT is not consensus):
/// - A document is visible whole or not at all: its manifest is set by one script that first
///   checks, on the master it commits to, that every key of the version exists. Replication
///   keeps a master's writes in order, so a replica promoted later that has the manifest has
///   the keys too.
/// - A write is acknowledged only when WAIT counted `minReplicas` replicas for its KV (before
///   the commit), its postings and its commit; otherwise it is reported degraded (`PutResult`).
public final class RedisStore: Sendable {
    public struct Options: Sendable {
        /// Replicas a write must reach (WAIT) to be acknowledged.
        public var minReplicas = 1
        public var waitTimeout: Duration = .milliseconds(500)
        /// Bound on one value: a window's layers are grouped under it.
        public var maxValueBytes = 8 << 20
        public init() {}
    }

    /// What a document write did.
    public struct PutResult: Sendable, Equatable {
        public var record: DocumentRecord
        /// The fewest replicas WAIT counted for any part of the write.
        public var replicas: Int
        public var acknowledged: Bool
    }

    public let client: RedisClusterClient
    public let knowledgeBase: String
    public let options: Options
    let keys: RedisKeys
    private let cachedManifest: Mutex<StoreManifest>
    public var manifest: StoreManifest { cachedManifest.withLock { $0 } }

    init(client: RedisClusterClient, knowledgeBase: String, manifest: StoreManifest, options: Options) {
        self.client = client
        self.knowledgeBase = knowledgeBase
        self.options = options
        self.keys = RedisKeys(knowledgeBase: knowledgeBase)
        self.cachedManifest = Mutex(manifest)
    }

    /// Opens knowledge base `knowledgeBase` on the cluster, creating its manifest when `create`
    /// is set and there is none (SET NX: of two creators one wins, the other opens it). A nil
    /// `modelFingerprint` opens it for whatever model it holds. The cluster must not evict keys.
    public static func open(client: RedisClusterClient, knowledgeBase: String, modelFingerprint: String?, modelName: String?,
                            create: Bool, dtype: TensorDType = .f16, shape: ModelShape? = nil,
                            options: Options = Options()) async throws -> RedisStore {
        guard RedisKeys.validName(knowledgeBase) else {
            throw StoreError.invalidInput("knowledge-base name '\(knowledgeBase)': use 1 to 64 letters, digits, '-', '_' or '.'")
        }
        let keys = RedisKeys(knowledgeBase: knowledgeBase)
        let location = "redis knowledge base '\(knowledgeBase)'"
        _ = try await checkNoEviction(client)
        var raw = try await client.run([Array("GET".utf8), keys.manifest], slot: keys.kbSlot)
        if case .bulkString(nil) = raw {
            guard create, let fp = modelFingerprint else { throw StoreError.notAStore(path: location) }
            let m = StoreManifest(formatVersion: StoreManifest.currentFormat, modelFingerprint: fp, modelName: modelName ?? "",
                                  adapters: [:], dtype: dtype.description, createdAt: KVStore.timestamp(), shape: shape)
            try await client.run([Array("SET".utf8), keys.manifest, try json(m), Array("NX".utf8)], slot: keys.kbSlot)
            raw = try await client.run([Array("GET".utf8), keys.manifest], slot: keys.kbSlot)
        }
        guard case .bulkString(let bytes?) = raw, let m = try? JSONDecoder().decode(StoreManifest.self, from: Data(bytes)) else {
            throw StoreError.corrupt("the manifest of \(location) is not valid JSON")
        }
        guard m.formatVersion <= StoreManifest.currentFormat else { throw StoreError.unsupportedFormat(path: location, version: m.formatVersion) }
        if let fp = modelFingerprint, fp != m.modelFingerprint {
            throw StoreError.modelMismatch(path: location, store: m.modelFingerprint, model: fp)
        }
        if let shape, let recorded = m.shape, recorded != shape { throw StoreError.shapeMismatch(path: location, store: recorded, model: shape) }
        return RedisStore(client: client, knowledgeBase: knowledgeBase, manifest: m, options: options)
    }

    /// Refuses a cluster whose masters may evict keys (a store of record must not lose data to
    /// memory pressure); returns warnings for masters without an append-only file.
    public static func checkNoEviction(_ client: RedisClusterClient) async throws -> [String] {
        var warnings: [String] = []
        for node in try await client.currentTopology().masters {
            let policy = try await configValue(client, node, "maxmemory-policy")
            if let policy, policy != "noeviction" {
                throw StoreError.invalidInput("Redis node \(node) has maxmemory-policy \(policy): it may evict AnchorKV's keys. Set maxmemory-policy noeviction on every node")
            }
            if try await configValue(client, node, "appendonly") == "no" {
                warnings.append("Redis node \(node) runs without appendonly: a node restart loses what it held since its last snapshot")
            }
        }
        return warnings
    }

    private static func configValue(_ client: RedisClusterClient, _ node: RedisNodeAddress, _ name: String) async throws -> String? {
        guard case .array(let items?) = try await client.run(["CONFIG", "GET", name], on: node), items.count == 2,
              case .bulkString(let v?) = items[1] else { return nil }
        return String(decoding: v, as: UTF8.self)
    }

    static func json<T: Encodable>(_ v: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return Array(try e.encode(v))
    }

    // MARK: documents

    /// What the document key holds: the record and how its KV is laid out.
    struct DocumentManifest: Codable {
        var record: DocumentRecord
        /// Layer groups per window (each a value of at most maxValueBytes).
        var groups: [Int]
        var layers: Int
    }

    func manifest(tag: String) async throws -> DocumentManifest? {
        let raw = try await client.run([Array("GET".utf8), keys.docManifest(tag)], slot: keys.docSlot(tag), readOnly: true)
        guard case .bulkString(let b) = raw else { throw RedisError.protocolError("GET answered \(raw)") }
        guard let b else { return nil }
        guard let m = try? JSONDecoder().decode(DocumentManifest.self, from: Data(b)) else {
            throw StoreError.corrupt("the manifest of the document with tag \(tag) in \(knowledgeBase) is not valid JSON")
        }
        return m
    }

    public func document(_ id: String) async throws -> DocumentRecord? {
        try await manifest(tag: RedisKeys.documentTag(id))?.record
    }

    /// Every visible document, in id order (the catalogue, checked against each manifest).
    public func documents() async throws -> [DocumentRecord] {
        let ids = try await catalogueEntries(readOnly: true)
        let found = try await manifests(tags: ids.map(\.tag))
        return ids.compactMap { id, tag in found[tag].flatMap { $0.record.id == id ? $0.record : nil } }.sorted { $0.id < $1.id }
    }

    /// The catalogue as stored: id and document tag of every entry (`readOnly`: a replica may answer).
    func catalogueEntries(readOnly: Bool) async throws -> [(id: String, tag: String)] {
        let raw = try await client.run([Array("HGETALL".utf8), keys.catalogue], slot: keys.kbSlot, readOnly: readOnly)
        guard case .array(let items?) = raw, items.count % 2 == 0 else { throw RedisError.protocolError("HGETALL answered \(raw)") }
        return stride(from: 0, to: items.count, by: 2).compactMap { i in
            guard case .bulkString(let k?) = items[i], case .bulkString(let v?) = items[i + 1] else { return nil }
            return (String(decoding: k, as: UTF8.self), String(decoding: v, as: UTF8.self))
        }
    }

    /// Manifests of many documents, fetched concurrently (each lives in its own slot).
    func manifests(tags: [String]) async throws -> [String: DocumentManifest] {
        try await withThrowingTaskGroup(of: (String, DocumentManifest?).self) { group in
            var out: [String: DocumentManifest] = [:]
            var pending = 0
            for tag in Set(tags) {
                if pending >= 64, let (t, m) = try await group.next() { pending -= 1; if let m { out[t] = m } }
                group.addTask { (tag, try await self.manifest(tag: tag)) }
                pending += 1
            }
            for try await (t, m) in group { if let m { out[t] = m } }
            return out
        }
    }

    public func window(_ doc: DocumentRecord, _ w: Int) async throws -> WindowRecord {
        let tag = RedisKeys.documentTag(doc.id)
        let raw = try await client.run([Array("GET".utf8), keys.window(tag, doc.number, w)], slot: keys.docSlot(tag), readOnly: true)
        guard case .bulkString(let b?) = raw else { throw StoreError.missingRecord(document: doc.id, window: w, layer: nil, what: "window record") }
        guard let r = try? JSONDecoder().decode(WindowRecord.self, from: Data(b)) else {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil, reason: "window record is not valid JSON")
        }
        return r
    }

    /// A window's KV records for every layer exactly as stored, checksums verified.
    public func rawKV(_ doc: DocumentRecord, window w: Int) async throws -> [[UInt8]] {
        let tag = RedisKeys.documentTag(doc.id)
        guard let m = try await manifest(tag: tag), m.record.number == doc.number, w < m.groups.count else {
            throw StoreError.missingRecord(document: doc.id, window: w, layer: nil, what: "KV record (the document changed or went away)")
        }
        let gets = (0..<m.groups[w]).map { [Array("GET".utf8), keys.kv(tag, doc.number, w, group: $0)] }
        var layers: [[UInt8]] = []
        for (g, r) in try await client.pipeline(gets, slot: keys.docSlot(tag), readOnly: true).enumerated() {
            guard case .bulkString(let v?) = r else { throw StoreError.missingRecord(document: doc.id, window: w, layer: nil, what: "KV group \(g)") }
            guard let parts = LayerFrames.split(v) else { throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil, reason: "KV group \(g) is not framed records") }
            layers += parts
        }
        guard layers.count == m.layers else {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil, reason: "\(layers.count) KV records, the manifest says \(m.layers)")
        }
        for (l, r) in layers.enumerated() {
            do { try r.withUnsafeBytes { try TensorCodec.verify($0) } } catch {
                throw StoreError.corruptRecord(document: doc.id, window: w, layer: l, reason: "\(error)")
            }
        }
        return layers
    }

    /// A window's KV records decoded (checked against `expect` when given).
    public func loadKV(_ doc: DocumentRecord, window w: Int, expect: TensorCodec.Shape? = nil) async throws -> [TensorRecord] {
        try await rawKV(doc, window: w).enumerated().map { l, raw in
            do { return try raw.withUnsafeBytes { try TensorCodec.decode($0, expect: expect) } } catch {
                throw StoreError.corruptRecord(document: doc.id, window: w, layer: l, reason: "\(error)")
            }
        }
    }

    /// Postings of `term` that belong to visible versions, with their documents' records.
    public func postings(_ term: String) async throws -> [(DocumentRecord, Posting)] {
        let key = keys.postings(term)
        let raw = try await client.run([Array("HGETALL".utf8), key], slot: HashSlot.slot(of: key), readOnly: true)
        guard case .array(let items?) = raw, items.count % 2 == 0 else { throw RedisError.protocolError("HGETALL answered \(raw)") }
        var found: [(tag: String, number: UInt64, window: Int, tf: Int, length: Int)] = []
        for i in stride(from: 0, to: items.count, by: 2) {
            guard case .bulkString(let f?) = items[i], case .bulkString(let v?) = items[i + 1], v.count == 8 else { continue }
            let parts = String(decoding: f, as: UTF8.self).split(separator: ":")
            guard parts.count == 3, let n = UInt64(parts[1]), let w = Int(parts[2]) else { continue }
            let tf = Int(v[0]) | Int(v[1]) << 8 | Int(v[2]) << 16 | Int(v[3]) << 24
            let len = Int(v[4]) | Int(v[5]) << 8 | Int(v[6]) << 16 | Int(v[7]) << 24
            found.append((String(parts[0]), n, w, tf, len))
        }
        let ms = try await manifests(tags: found.map(\.tag))
        return found.compactMap { p in
            guard let m = ms[p.tag], m.record.number == p.number else { return nil }  // superseded or not committed
            return (m.record, Posting(document: p.number, window: p.window, termFrequency: p.tf, windowLength: p.length))
        }
    }

    // MARK: writes

    /// Writes documents one by one (each whole or not at all; a batch is not atomic across
    /// documents on a cluster). `adapters` (ratio -> fingerprint) must agree with the ones the
    /// knowledge base holds: the first writer of a ratio sets it (HSETNX on the manifest's slot).
    public func put(_ docs: [EncodedDocument], adapters: [String: String]) async throws -> [PutResult] {
        try await register(adapters: adapters)
        var out: [PutResult] = []
        for d in docs { out.append(try await put(d)) }
        return out
    }

    /// Records the ratios' adapters (HSETNX: the first writer of a ratio sets it); another
    /// adapter for a ratio held is refused.
    public func register(adapters: [String: String]) async throws {
        let key = keys.manifest + Array(":adapters".utf8)
        for (ratio, fp) in adapters.sorted(by: { $0.key < $1.key }) {
            let replies = try await client.pipeline([[Array("HSETNX".utf8), key, Array(ratio.utf8), Array(fp.utf8)],
                                                     [Array("HGET".utf8), key, Array(ratio.utf8)]], slot: keys.kbSlot)
            guard case .bulkString(let held?) = replies[1] else { throw RedisError.protocolError("HGET answered \(replies[1])") }
            let stored = String(decoding: held, as: UTF8.self)
            if stored != fp { throw StoreError.adapterConflict(ratio: Int(ratio) ?? 0, stored: stored, requested: fp) }
            cachedManifest.withLock { $0.adapters[ratio] = fp }
        }
    }

    /// The ratios' adapters as the cluster holds them (merged into `manifest`).
    public func refreshAdapters() async throws -> [String: String] {
        let key = keys.manifest + Array(":adapters".utf8)
        guard case .array(let items?) = try await client.run([Array("HGETALL".utf8), key], slot: keys.kbSlot) else { return [:] }
        var out: [String: String] = [:]
        for i in stride(from: 0, to: items.count - 1, by: 2) {
            if case .bulkString(let k?) = items[i], case .bulkString(let v?) = items[i + 1] {
                out[String(decoding: k, as: UTF8.self)] = String(decoding: v, as: UTF8.self)
            }
        }
        cachedManifest.withLock { $0.adapters = out }
        return out
    }

    /// Sets KEYS[1] to ARGV[1] only if every other key exists, so that a version becomes
    /// visible only on a master that holds all of it; with ARGV[2] (a number) only if the
    /// manifest there still names that version. Returns {1, the manifest replaced or ''},
    /// {0} when a key is missing, {-1} when the version changed.
    static let commitScript = """
        local cur = redis.call('GET', KEYS[1])
        if ARGV[2] ~= '' then
          if not cur or tostring(cjson.decode(cur).record.number) ~= ARGV[2] then return {-1} end
        end
        for i = 2, #KEYS do if redis.call('EXISTS', KEYS[i]) == 0 then return {0} end end
        redis.call('SET', KEYS[1], ARGV[1])
        return {1, cur or ''}
        """

    private func waitCommand() -> [[UInt8]] {
        let ms = options.waitTimeout.components.seconds * 1000 + options.waitTimeout.components.attoseconds / 1_000_000_000_000_000
        return ["WAIT", String(options.minReplicas), String(max(1, ms))].map { Array($0.utf8) }
    }

    private static func count(_ reply: RESPValue) throws -> Int {
        guard case .integer(let n) = reply else { throw RedisError.protocolError("WAIT answered \(reply)") }
        return Int(n)
    }

    /// A document version written but not visible yet: its keys and postings are in place under
    /// a fresh number, and nothing names it until `commit`.
    public struct StagedDocument: Sendable {
        public var record: DocumentRecord
        let tag: String
        let manifest: DocumentManifest
        let versionKeys: [[UInt8]]
        let postings: [[UInt8]: [[UInt8]]]
        let totalLength: Int
        /// The fewest replicas WAIT counted so far.
        var replicas: Int
    }

    /// Writes a version's windows, KV and postings (each part followed by WAIT on its slot).
    public func stage(_ d: EncodedDocument) async throws -> StagedDocument {
        guard d.windows.count == d.kv.count, d.windows.count == d.record.windows, !d.kv.isEmpty else {
            throw StoreError.invalidInput("document '\(d.record.id)': \(d.windows.count) windows, \(d.kv.count) KV lists, record says \(d.record.windows)")
        }
        guard Set(d.kv.map(\.count)).count == 1 else { throw StoreError.invalidInput("document '\(d.record.id)': windows with different layer counts") }
        let tag = RedisKeys.documentTag(d.record.id)
        guard case .integer(let n) = try await client.run([Array("INCR".utf8), keys.next], slot: keys.kbSlot) else {
            throw RedisError.protocolError("INCR did not answer an integer")
        }
        var record = d.record
        record.number = UInt64(n)
        record.kvBytes = d.kv.joined().reduce(0) { $0 + $1.count }

        var versionKeys: [[UInt8]] = [], writes: [[[UInt8]]] = [], groups: [Int] = []
        for (w, win) in d.windows.enumerated() {
            let k = keys.window(tag, record.number, w)
            writes.append([Array("SET".utf8), k, try Self.json(win)])
            versionKeys.append(k)
            let framed = LayerFrames.groups(d.kv[w], maxBytes: options.maxValueBytes)
            groups.append(framed.count)
            for (g, v) in framed.enumerated() {
                let k = keys.kv(tag, record.number, w, group: g)
                writes.append([Array("SET".utf8), k, v])
                versionKeys.append(k)
            }
        }
        let written = try await client.pipeline(writes + [waitCommand()], slot: keys.docSlot(tag))
        for r in written.dropLast() { if case .error(let m) = r { throw RedisError.reply(m) } }
        var replicas = try Self.count(written.last!)
        // The catalogue entry after the version's keys: `sweep` relies on that order (an entry
        // whose document has no manifest and no keys left is a crash's leftover).
        try await client.run([Array("HSET".utf8), keys.catalogue, Array(record.id.utf8), Array(tag.utf8)], slot: keys.kbSlot)

        // Postings, grouped by index bucket (one slot each), each group with its WAIT.
        var byKey: [[UInt8]: [[UInt8]]] = [:], fields: [[UInt8]: [[UInt8]]] = [:]
        var totalLength = 0
        for (w, win) in d.windows.enumerated() {
            totalLength += win.termCount
            for (term, tf) in win.terms {
                var v: [UInt8] = []
                LayerFrames.append32(&v, tf)
                LayerFrames.append32(&v, win.termCount)
                let k = keys.postings(term), f = RedisKeys.postingField(tag: tag, number: record.number, window: w)
                byKey[k, default: []] += [f, v]
                fields[k, default: []].append(f)
            }
        }
        var bySlot: [Int: [[[UInt8]]]] = [:]
        for (k, fv) in byKey { bySlot[HashSlot.slot(of: k), default: []].append([Array("HSET".utf8), k] + fv) }
        replicas = min(replicas, try await withThrowingTaskGroup(of: Int.self) { group in
            for (s, commands) in bySlot {
                group.addTask {
                    let r = try await self.client.pipeline(commands + [self.waitCommand()], slot: s)
                    for x in r.dropLast() { if case .error(let m) = x { throw RedisError.reply(m) } }
                    return try Self.count(r.last!)
                }
            }
            var least = Int.max
            for try await n in group { least = min(least, n) }
            return least
        })
        return StagedDocument(record: record, tag: tag, manifest: DocumentManifest(record: record, groups: groups, layers: d.kv[0].count),
                              versionKeys: versionKeys, postings: fields, totalLength: totalLength, replicas: replicas)
    }

    /// Makes a staged version visible (one script on its slot, then WAIT) and retires the
    /// version it replaced; with `replacing`, only if the stored version is still that one.
    public func commit(_ s: StagedDocument, replacing expected: DocumentRecord? = nil) async throws -> PutResult {
        let script = [Array("EVAL".utf8), Array(Self.commitScript.utf8), Array(String(1 + s.versionKeys.count).utf8), keys.docManifest(s.tag)]
            + s.versionKeys + [try Self.json(s.manifest), Array((expected.map { String($0.number) } ?? "").utf8)]
        let committed = try await client.pipeline([script, waitCommand()], slot: keys.docSlot(s.tag))
        if case .error(let m) = committed[0] { throw RedisError.reply(m) }
        guard case .array(let parts?) = committed[0], let status = parts.first else { throw RedisError.protocolError("the commit script answered \(committed[0])") }
        if status == .integer(-1) {
            try? await discard(s)
            throw StoreError.invalidInput("document '\(s.record.id)' changed while it was being re-encoded")
        }
        guard status == .integer(1) else {
            throw StoreError.corrupt("document '\(s.record.id)' was not committed: keys of its version are missing on the master of its slot (lost in a failover); write it again")
        }
        let replicas = min(s.replicas, try Self.count(committed[1]))
        try await account(s.record, windowCount: s.manifest.groups.count, totalLength: s.totalLength, sign: 1)
        if parts.count > 1, case .bulkString(let old?) = parts[1], !old.isEmpty,
           let previous = try? JSONDecoder().decode(DocumentManifest.self, from: Data(old)) {
            try await account(previous.record, windowCount: previous.groups.count, totalLength: nil, sign: -1)
            try await removeVersion(previous, tag: s.tag)
        }
        return PutResult(record: s.record, replicas: replicas, acknowledged: replicas >= options.minReplicas)
    }

    /// Deletes a staged version that will not be committed (an import that failed).
    public func discard(_ s: StagedDocument) async throws {
        for (k, f) in s.postings { _ = try await client.pipeline([[Array("HDEL".utf8), k] + f], slot: HashSlot.slot(of: k)) }
        _ = try await client.pipeline(s.versionKeys.map { [Array("DEL".utf8), $0] }, slot: keys.docSlot(s.tag))
        if try await manifest(tag: s.tag) == nil {
            _ = try await client.pipeline([[Array("HDEL".utf8), keys.catalogue, Array(s.record.id.utf8)]], slot: keys.kbSlot)
        }
    }

    /// Writes one document; with `replacing`, only if the stored version is still that one
    /// (compaction swaps a document's KV; a re-ingest or delete meanwhile wins).
    public func put(_ d: EncodedDocument, adapters: [String: String], replacing expected: DocumentRecord) async throws -> PutResult {
        try await register(adapters: adapters)
        return try await put(d, replacing: expected)
    }

    private func put(_ d: EncodedDocument, replacing expected: DocumentRecord? = nil) async throws -> PutResult {
        if let expected, try await manifest(tag: RedisKeys.documentTag(d.record.id))?.record != expected {
            throw StoreError.invalidInput("document '\(expected.id)' changed while it was being re-encoded")
        }
        return try await commit(try await stage(d), replacing: expected)
    }

    /// Counters: documents, windows, tokens, anchors, kvBytes, totalLength (statistics only).
    private func account(_ r: DocumentRecord, windowCount: Int, totalLength: Int?, sign: Int) async throws {
        var commands: [[String]] = [
            ["HINCRBY", "documents", String(sign)], ["HINCRBY", "windows", String(sign * windowCount)],
            ["HINCRBY", "tokens", String(sign * r.tokens)], ["HINCRBY", "anchors", String(sign * r.anchors)],
            ["HINCRBY", "kvBytes", String(sign * r.kvBytes)],
        ]
        if let totalLength { commands.append(["HINCRBY", "totalLength", String(sign * totalLength)]) }
        let stats = String(decoding: keys.stats, as: UTF8.self)
        _ = try await client.pipeline(commands.map { [$0[0], stats] + $0[1...] }, slot: keys.kbSlot)
    }

    /// Deletes a superseded or deleted version's keys and postings (nothing reads them: the
    /// manifest no longer names the version).
    private func removeVersion(_ m: DocumentManifest, tag: String) async throws {
        var dels: [[[UInt8]]] = []
        var postingKeys = Set<[UInt8]>()
        var fields: [[UInt8]: [[UInt8]]] = [:]
        var length = 0
        for w in 0..<m.groups.count {
            if let win = try? await window(m.record, w) {
                length += win.termCount
                for term in win.terms.keys {
                    let k = keys.postings(term)
                    postingKeys.insert(k)
                    fields[k, default: []].append(RedisKeys.postingField(tag: tag, number: m.record.number, window: w))
                }
            }
            dels.append([Array("DEL".utf8), keys.window(tag, m.record.number, w)])
            for g in 0..<m.groups[w] { dels.append([Array("DEL".utf8), keys.kv(tag, m.record.number, w, group: g)]) }
        }
        for k in postingKeys { _ = try await client.pipeline([[Array("HDEL".utf8), k] + fields[k]!], slot: HashSlot.slot(of: k)) }
        _ = try await client.pipeline([["HINCRBY", String(decoding: keys.stats, as: UTF8.self), "totalLength", String(-length)]], slot: keys.kbSlot)
        _ = try await client.pipeline(dels, slot: keys.docSlot(tag))
    }

    /// Deletes a document: its manifest first (it disappears at once), then its keys, postings
    /// and catalogue entry. False when it was not there.
    @discardableResult
    public func delete(_ id: String) async throws -> Bool {
        let tag = RedisKeys.documentTag(id)
        guard let m = try await manifest(tag: tag), m.record.id == id else {
            _ = try await client.pipeline([[Array("HDEL".utf8), keys.catalogue, Array(id.utf8)]], slot: keys.kbSlot)
            return false
        }
        let r = try await client.transaction([[Array("DEL".utf8), keys.docManifest(tag)]], slot: keys.docSlot(tag),
                                             waitReplicas: options.minReplicas, waitTimeout: options.waitTimeout)
        guard r.replies == [.integer(1)] else { return false }  // deleted meanwhile
        try await account(m.record, windowCount: m.groups.count, totalLength: nil, sign: -1)
        try await removeVersion(m, tag: tag)
        _ = try await client.pipeline([[Array("HDEL".utf8), keys.catalogue, Array(id.utf8)]], slot: keys.kbSlot)
        return true
    }

    /// The counters (kept by every write; statistics, not a scan).
    public func lexStats() async throws -> KVStore.LexStats {
        let raw = try await client.run([Array("HGETALL".utf8), keys.stats], slot: keys.kbSlot, readOnly: true)
        var s = KVStore.LexStats()
        guard case .array(let items?) = raw else { return s }
        for i in stride(from: 0, to: items.count - 1, by: 2) {
            guard case .bulkString(let k?) = items[i], case .bulkString(let v?) = items[i + 1], let n = Int(String(decoding: v, as: UTF8.self)) else { continue }
            switch String(decoding: k, as: UTF8.self) {
            case "documents": s.documents = n
            case "windows": s.windows = n
            case "tokens": s.tokens = n
            case "anchors": s.anchors = n
            case "kvBytes": s.kvBytes = n
            case "totalLength": s.totalLength = n
            default: break
            }
        }
        s.counted = true
        return s
    }
}
