import Foundation
import KVStore
import KnowledgeBase
import SAC
import Snapshots

/// Progress of an import: the file verified so far, then the one atomic write.
public typealias ImportProgress = SnapshotImporter.Progress

extension KnowledgeService {
    // MARK: compaction

    /// Re-encodes documents at `toRatio` (from their stored window tokens) in chunks, each
    /// document swapped atomically, RocksDB's compaction after each chunk; `stop` is honoured
    /// between chunks (a rerun skips what is done). `older_than` keeps documents ingested before it.
    public func compact(toRatio ratio: Int, adapter choice: AdapterChoice = AdapterChoice(), documents ids: [String]? = nil,
                        olderThan: Date? = nil, stop: StopFlag? = nil,
                        progress: (_ done: Int, _ total: Int, _ message: String) -> Void = { _, _, _ in }) throws(CoreError) -> CompactionResult {
        guard ratio >= 1 else { throw .invalidInput("the target ratio must be >= 1") }
        var c = choice
        c.ratio = ratio
        let adapter = try catalog.encoder(c).adapter
        if let ids {
            guard !ids.isEmpty else { throw .invalidInput("the document list is empty; leave it out to compact every document") }
            let missing = try CoreError.mapping { try ids.filter { try kb.store.document($0) == nil } }
            if !missing.isEmpty { throw .noDocuments(missing) }
        }
        let all = if let ids { ids } else { try CoreError.mapping { try kb.store.documents().map(\.id) } }
        // Each chunk ends with RocksDB's compaction of the store: about ten chunks per run.
        let chunk = max(16, (all.count + 9) / 10)
        var result = CompactionResult(toRatio: ratio, adapter: adapter?.fingerprint ?? "none")
        var diskBefore: Int?
        var start = 0
        progress(0, all.count, "compacting to ratio \(ratio)")
        while start < all.count, !(stop?.shouldStop ?? false) {
            let part = Array(all[start..<min(start + chunk, all.count)])
            let offset = start
            let r = try CoreError.mapping {
                try kb.compact(toRatio: ratio, adapter: adapter, documents: part, olderThan: olderThan) { done, _, id in
                    progress(offset + done, all.count, id.isEmpty ? "compacting to ratio \(ratio)" : "re-encoding \(id)")
                }
            }
            result.compacted += r.compacted
            result.alreadyDone += r.alreadyDone
            result.failed += r.failed.map { CompactionFailure(id: $0.id, error: $0.error) }
            result.windows += r.windows; result.tokens += r.tokens
            result.kvBytesBefore += r.kvBytesBefore; result.kvBytesAfter += r.kvBytesAfter; result.seconds += r.seconds
            if diskBefore == nil { diskBefore = r.diskBytesBefore }
            result.diskBytesAfter = r.diskBytesAfter
            start += part.count
            progress(start, all.count, "compacted \(result.compacted.count), already at ratio \(result.alreadyDone.count), failed \(result.failed.count)")
        }
        result.notAttempted = all.count - start
        result.diskBytesBefore = diskBefore ?? kb.store.diskBytes()
        if start == 0 { result.diskBytesAfter = kb.store.diskBytes() }
        return result
    }

    /// An age (30d, 12h, 90m, 45s) before `now`, or an ISO 8601 date.
    public static func parseAge(_ s: String, now: Date = Date()) throws(CoreError) -> Date {
        if let d = ISO8601DateFormatter().date(from: s) { return d }
        if let seconds = seconds(ofAge: s) { return now.addingTimeInterval(-seconds) }
        throw .invalidInput("an age is like 30d, 12h, 90m or 45s, or an ISO 8601 date, not '\(s)'")
    }

    /// Seconds in "30d", "12h", "90m" or "45s"; nil when `s` is not one of those.
    static func seconds(ofAge s: String) -> Double? {
        let units: [Character: Double] = ["d": 86400, "h": 3600, "m": 60, "s": 1]
        guard let u = s.last, let mult = units[u], let n = Double(s.dropLast()), n >= 0, n.isFinite else { return nil }
        return n * mult
    }

    // MARK: sweep

    /// Removes what interrupted writes left in the configured store and recounts its counters
    /// (`DocumentStore.sweep`), without loading the model. `olderThan` is the grace: versions no
    /// manifest names are removed only when untouched that long (a write may be on its way).
    public static func sweep(config: AppConfig, olderThan grace: Duration, dryRun: Bool) throws(CoreError) -> SweepReport {
        guard grace >= .zero else { throw .invalidInput("the grace must not be negative") }
        let store = try openStoreOnly(config)
        return try CoreError.mapping { try store.sweep(olderThan: grace, dryRun: dryRun) }
    }

    /// An age (30d, 12h, 90m, 45s) as a duration.
    public static func parseDuration(_ s: String) throws(CoreError) -> Duration {
        if let seconds = seconds(ofAge: s), seconds < 1e12 { return .milliseconds(Int64((seconds * 1000).rounded())) }
        throw .invalidInput("a duration is like 1h, 90m or 45s, not '\(s)'")
    }

    // MARK: snapshots

    /// Opens the configured store for byte-level work: no model is loaded, fingerprints are compared as recorded.
    static func openStoreOnly(_ config: AppConfig) throws(CoreError) -> any DocumentStore {
        let location = try StoreLocation.parse(config.storePath)
        return try CoreError.mapping { try location.open(config: config, modelFingerprint: nil, modelName: nil, create: false) }
    }

    /// Writes the configured store (or some documents) to one snapshot file, without loading the model.
    public static func export(config: AppConfig, documents: [String]?, to path: String,
                              progress: (_ done: Int, _ total: Int, _ bytes: Int) -> Void = { _, _, _ in }) throws(CoreError) -> ExportResult {
        try export(store: openStoreOnly(config), documents: documents, to: path, progress: progress)
    }

    /// Writes the store (or some documents) from one RocksDB snapshot to `path` (via path.partial).
    public func export(documents: [String]?, to path: String,
                       progress: (_ done: Int, _ total: Int, _ bytes: Int) -> Void = { _, _, _ in }) throws(CoreError) -> ExportResult {
        try Self.export(store: kb.store, documents: documents, to: path, progress: progress)
    }

    static func export(store: any DocumentStore, documents ids: [String]?, to path: String,
                       progress: (Int, Int, Int) -> Void) throws(CoreError) -> ExportResult {
        if let ids {
            guard !ids.isEmpty else { throw .invalidInput("the document list is empty; leave it out to export every document") }
            let missing = try CoreError.mapping { try ids.filter { try store.document($0) == nil } }
            if !missing.isEmpty { throw CoreError(.notFound, CoreError.noDocuments(missing).message + "; nothing was exported") }
        }
        let r = try CoreError.mapping { try SnapshotExporter.export(store: store, documents: ids, to: path, progress: progress) }
        return ExportResult(snapshot: SnapshotInfo(r.manifest), file: r.path, bytes: r.bytes, seconds: r.seconds, mbPerS: r.megabytesPerSecond)
    }

    /// Imports a snapshot into the configured store (created from the snapshot's manifest when
    /// missing, after the whole file verified), without loading the model.
    public static func importSnapshot(config: AppConfig, file: String, onConflict: ConflictPolicy = .fail,
                                      progress: (ImportProgress) -> Void = { _ in }) throws(CoreError) -> ImportResult {
        let location = try StoreLocation.parse(config.storePath)
        let store = try CoreError.mapping { () throws -> any DocumentStore in
            if case .folder(let path) = location, !FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("CURRENT")) {
                let m = try SnapshotReader.read(path: file)
                return try KVStore(path: path, modelFingerprint: m.modelFingerprint, modelName: m.modelName, create: true)
            }
            do { return try location.open(config: config, modelFingerprint: nil, modelName: nil, create: false) } catch StoreError.notAStore {
                let m = try SnapshotReader.read(path: file)  // a new knowledge base on the cluster, after the file verified
                return try location.open(config: config, modelFingerprint: m.modelFingerprint, modelName: m.modelName, create: true)
            }
        }
        return try importSnapshot(file: file, into: store, onConflict: onConflict, progress: progress)
    }

    /// Imports a snapshot: verified whole first, then every new document in one atomic write.
    /// Documents of other ratios become answerable where their adapter is configured; the ones
    /// that are not are listed in `undecodable`.
    public func importSnapshot(file: String, onConflict: ConflictPolicy = .fail,
                               progress: (ImportProgress) -> Void = { _ in }) throws(CoreError) -> ImportResult {
        var r = try Self.importSnapshot(file: file, into: kb.store, onConflict: onConflict, progress: progress)
        r.undecodable = r.snapshot.adapters.filter { !addDecoder(ratio: $0.key, fingerprint: $0.value) }
        return r
    }

    static func importSnapshot(file: String, into store: any DocumentStore, onConflict: ConflictPolicy,
                               progress: (ImportProgress) -> Void) throws(CoreError) -> ImportResult {
        let r = try CoreError.mapping { try SnapshotImporter.importSnapshot(from: file, into: store, onConflict: onConflict, progress: progress) }
        return ImportResult(snapshot: SnapshotInfo(r.manifest), store: store.location, file: file, added: r.added, replaced: r.replaced,
                            unchanged: r.unchanged, repaired: r.repaired, skipped: r.skipped, bytes: r.bytes, seconds: r.seconds,
                            mbPerS: r.megabytesPerSecond, undecodable: [:])
    }

    /// A snapshot file's manifest; with `verify`, after reading the whole file and checking every checksum and count.
    public static func inspectSnapshot(file: String, verify: Bool) throws(CoreError) -> SnapshotInfo {
        var info = SnapshotInfo(try CoreError.mapping { verify ? try SnapshotReader.read(path: file) : try SnapshotReader.manifest(path: file) })
        info.file = file
        info.bytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        if verify { info.verified = true }
        return info
    }

    /// Statistics of the configured store without loading the model.
    public static func stats(config: AppConfig, logicalBytes: Bool = true) throws(CoreError) -> StoreStats {
        try stats(of: openStoreOnly(config), fullKVBytesPerToken: nil, logicalBytes: logicalBytes)
    }
}
