import Foundation
import KVStore
import SAC

public struct CompactionReport: Sendable {
    public var toRatio: Int
    public var adapter: String
    /// Documents re-encoded by this run.
    public var compacted: [String] = []
    /// Documents already at the target ratio and adapter (left alone: what makes reruns resume).
    public var alreadyDone: [String] = []
    public var failed: [(id: String, error: String)] = []
    public var windows = 0
    public var tokens = 0
    public var kvBytesBefore = 0
    public var kvBytesAfter = 0
    public var diskBytesBefore = 0
    public var diskBytesAfter = 0
    public var seconds = 0.0
    public var windowsPerSecond: Double { seconds > 0 ? Double(windows) / seconds : 0 }
}

extension KnowledgeBase {
    /// Re-encodes documents at `ratio` from their stored window tokens (no source text needed),
    /// swapping each document's KV atomically (KVStore.replaceKV), then runs RocksDB's
    /// compaction so the freed space goes back to the file system. A crash leaves every
    /// document at either its old or its new ratio; rerunning skips the ones already done.
    /// Queries may run meanwhile: they read records and KV from one RocksDB snapshot.
    ///
    /// - Parameters:
    ///   - adapter: the adapter for `ratio` (nil: training-free anchors). A store that already
    ///     holds `ratio` with another adapter refuses it.
    ///   - documents: only these ids (all when nil).
    ///   - olderThan: only documents ingested before this date.
    public func compact(toRatio ratio: Int, adapter: SACAdapter?, documents ids: [String]? = nil, olderThan: Date? = nil,
                        progress: (_ done: Int, _ total: Int, _ id: String) -> Void = { _, _, _ in }) throws -> CompactionReport {
        let t0 = DispatchTime.now().uptimeNanoseconds
        if let adapter, adapter.ratio != ratio {
            throw StoreError.invalidInput("the adapter is for ratio \(adapter.ratio), not \(ratio)")
        }
        let encoder = try SACEncoder(model: model, mode: adapter.map { .adapter($0) } ?? .plain, ratio: ratio)
        var candidates: [DocumentRecord]
        if let ids {
            candidates = try ids.map { id in
                guard let d = try store.document(id) else { throw StoreError.invalidInput("no document '\(id)' in the store") }
                return d
            }
        } else {
            candidates = try store.documents()
        }
        if let olderThan {
            let f = ISO8601DateFormatter()
            candidates = candidates.filter { f.date(from: $0.ingestedAt).map { $0 < olderThan } ?? false }
        }
        let fp = adapter?.fingerprint
        var report = CompactionReport(toRatio: ratio, adapter: fp ?? "none")
        report.diskBytesBefore = store.diskBytes()
        let todo = candidates.filter { !($0.ratio == ratio && $0.adapter == fp) }
        report.alreadyDone = candidates.filter { $0.ratio == ratio && $0.adapter == fp }.map(\.id)
        if !todo.isEmpty {
            try store.checkAdapter(ratio: ratio, fingerprint: fp)  // registered in the first swap's batch
            try addDecoder(for: adapter)
        }
        for (i, doc) in todo.enumerated() {
            progress(i, todo.count, doc.id)
            do {
                // The record and its windows are read in one RocksDB snapshot, so a re-ingest
                // landing meanwhile cannot give windows of another version; replaceKV then
                // refuses the swap if the record changed since.
                let snap = store.snapshot()
                guard try store.document(doc.id, snapshot: snap) == doc else {
                    throw StoreError.invalidInput("document '\(doc.id)' changed while compaction was running; run it again")
                }
                var tokens: [Int32] = []
                for w in 0..<doc.windows { tokens += try store.window(doc, w, snapshot: snap).tokens }
                guard tokens.count == doc.tokens else {
                    throw StoreError.corruptRecord(document: doc.id, window: 0, layer: nil, reason: "windows hold \(tokens.count) tokens, the record says \(doc.tokens)")
                }
                let ctx = try encoder.compress(tokens: tokens)
                let (before, after) = try store.replaceKV(of: doc, ratio: ratio, adapter: fp, kv: Self.windowRecords(of: ctx), anchors: ctx.anchorCount)
                report.compacted.append(doc.id)
                report.windows += doc.windows
                report.tokens += doc.tokens
                report.kvBytesBefore += before
                report.kvBytesAfter += after
            } catch {
                report.failed.append((doc.id, "\(error)"))
            }
        }
        if !todo.isEmpty { progress(todo.count, todo.count, "") }
        if !report.compacted.isEmpty { store.compactStorage() }
        report.diskBytesAfter = store.diskBytes()
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return report
    }
}
