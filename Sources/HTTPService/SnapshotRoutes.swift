import Foundation
import Hummingbird
import KVStore
import KnowledgeBase
import NIOCore
import SAC
import Snapshots
import Synchronization

/// Picks the adapter for a compaction target ratio (`noAdapter`: training-free anchors, nil).
/// `anchorkv serve` resolves it from the config's adapters, as `anchorkv compact` does.
public typealias AdapterResolver = @Sendable (_ ratio: Int, _ noAdapter: Bool) throws -> SACAdapter?

extension AnchorService {
    /// The file an export is written to before it is streamed, or an upload before it is imported.
    func temporaryFile(_ kind: String, extension ext: String = "akvs") -> String {
        let dir = config.tmpDir.isEmpty ? FileManager.default.temporaryDirectory.path : config.tmpDir
        return (dir as NSString).appendingPathComponent("anchorkv-\(kind)-\(UUID().uuidString).\(ext)")
    }

    /// Exports the store (or some documents) from one RocksDB snapshot to a temporary file and
    /// returns it opened and already unlinked: the space goes back when the handle is closed.
    func exportSnapshot(documents: [String]?, deadline: ContinuousClock.Instant) async throws -> (FileHandle, ExportReport) {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        if let ids = documents {
            let missing = try ids.filter { try kb.store.document($0) == nil }
            if !missing.isEmpty { throw APIError.notFound("no document \(missing.map { "'\($0)'" }.joined(separator: ", ")) in the store; nothing was exported") }
        }
        try await acquire(snapshotLane, until: deadline, what: "the snapshot lane (one export or import at a time)")
        defer { snapshotLane.release() }
        let path = temporaryFile("export")
        let store = kb.store
        return try await runBlocking(name: "anchorkv-export") {
            defer { try? FileManager.default.removeItem(atPath: path) }
            let report = try SnapshotExporter.export(store: store, documents: documents, to: path)
            guard let handle = FileHandle(forReadingAtPath: path) else { throw APIError(.internalServerError, "internal", "cannot reopen the export \(path)") }
            return (handle, report)
        }
    }

    /// Imports a snapshot file (already verified by nothing: the importer verifies all of it
    /// before it writes, then writes everything in one batch). Runs in the writers' lane.
    func importSnapshot(path: String, onConflict: ConflictPolicy, deadline: ContinuousClock.Instant,
                        progress: (@Sendable (SnapshotImporter.Progress) -> Void)? = nil) async throws -> ImportReport {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await acquire(snapshotLane, until: deadline, what: "the snapshot lane (one export or import at a time)")
        defer { snapshotLane.release() }
        try await acquire(ingestLane, until: deadline, what: "the ingest lane (imports write like ingests)")
        defer { ingestLane.release() }
        let store = kb.store, kb = self.kb, resolver = adapterResolver, logger = self.logger
        return try await runBlocking(name: "anchorkv-import") {
            let report = try SnapshotImporter.importSnapshot(from: path, into: store, onConflict: onConflict) { progress?($0) }
            // Make imported documents of other ratios answerable where their adapter is at hand.
            for (ratio, fp) in report.manifest.adapters {
                do {
                    if fp == "none" { try kb.addDecoder(for: nil); continue }
                    if let r = Int(ratio), let a = try resolver(r, false), a.fingerprint == fp { try kb.addDecoder(for: a) }
                    else { logger.warning("imported documents at ratio \(ratio) use adapter \(fp), which the config does not have; queries on them fail until it is configured") }
                } catch {
                    logger.warning("imported documents at ratio \(ratio): no decoder (\(error))")
                }
            }
            return report
        }
    }

    /// Compacts documents to `ratio` in chunks, so a cancelled job or a shutdown stops between
    /// chunks (each document's swap is atomic; a rerun skips what is done).
    func compact(ratio: Int, adapter: SACAdapter?, documents: [String]?, olderThan: Date?, handle: JobHandle) throws -> JSONValue {
        let ids = try documents ?? kb.store.documents().map(\.id)
        // Each chunk ends with RocksDB's compaction of the store: about ten chunks per run.
        let chunk = max(16, (ids.count + 9) / 10)
        var compacted: [String] = [], already: [String] = [], failed: [JSONValue] = []
        var windows = 0, tokens = 0, before = 0, after = 0, seconds = 0.0
        var diskBefore: Int?, diskAfter = 0
        var start = 0
        handle.report(done: 0, total: ids.count, message: "compacting to ratio \(ratio)")
        while start < ids.count && !handle.shouldStop {
            let part = Array(ids[start..<min(start + chunk, ids.count)])
            let offset = start
            let r = try kb.compact(toRatio: ratio, adapter: adapter, documents: part, olderThan: olderThan) { done, _, id in
                handle.report(done: offset + done, total: ids.count, message: id.isEmpty ? "compacting to ratio \(ratio)" : "re-encoding \(id)")
            }
            compacted += r.compacted; already += r.alreadyDone
            failed += r.failed.map { ["id": .string($0.id), "error": .string($0.error)] }
            windows += r.windows; tokens += r.tokens; before += r.kvBytesBefore; after += r.kvBytesAfter; seconds += r.seconds
            if diskBefore == nil { diskBefore = r.diskBytesBefore }
            diskAfter = r.diskBytesAfter
            start += part.count
            handle.report(done: start, total: ids.count, message: "compacted \(compacted.count), already at ratio \(already.count), failed \(failed.count)")
        }
        return ["to_ratio": .int(ratio), "adapter": .string(adapter?.fingerprint ?? "none"),
                "compacted": .array(compacted.map { .string($0) }), "already_done": .array(already.map { .string($0) }),
                "failed": .array(failed), "not_attempted": .int(ids.count - start), "windows": .int(windows), "tokens": .int(tokens),
                "kv_bytes_before": .int(before), "kv_bytes_after": .int(after), "disk_bytes_before": .int(diskBefore ?? kb.store.diskBytes()),
                "disk_bytes_after": .int(start > 0 ? diskAfter : kb.store.diskBytes()), "seconds": .double(seconds),
                "windows_per_s": .double(seconds > 0 ? Double(windows) / seconds : 0)]
    }
}

extension Handlers {
    static func describe(_ m: SnapshotManifest) -> JSONValue {
        ["format": .string(m.format), "format_version": .int(m.formatVersion), "created_at": .string(m.createdAt),
         "model": .string(m.modelName), "model_fingerprint": .string(m.modelFingerprint), "adapters": .object(m.adapters.mapValues { .string($0) }),
         "ratios": .array(m.ratios.map { .int($0) }), "documents": .int(m.documents), "windows": .int(m.windows),
         "kv_records": .int(m.kvRecords), "kv_bytes": .int(m.kvBytes), "tokens": .int(m.tokens), "layers": .int(m.layers)]
    }

    /// POST /v1/snapshots: `{"documents": [...]}` (optional; all when left out). The snapshot is
    /// written whole from one RocksDB snapshot first (an export that fails is an error, never a
    /// truncated download), then streamed.
    func exportSnapshot(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let raw = try await Self.body(request, limit: config.maxBodyBytes)
        var documents: [String]?
        if raw.readableBytes > 0 {
            var f = Fields(try JSONValue.parseObject(raw))
            documents = try f.strings("documents", maxCount: 100_000)
            try f.rejectUnknown()
            if let d = documents, d.isEmpty { throw APIError.badRequest("'documents' is empty; leave it out to export every document") }
        }
        let (handle, report) = try await service.exportSnapshot(documents: documents, deadline: arrival + .nanoseconds(Int64(config.requestTimeout * 1e9)))
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let headers: HTTPFields = [
            .contentType: "application/octet-stream",
            .contentDisposition: "attachment; filename=\"anchorkv-\(stamp).akvs\"",
        ]
        let box = FileBox(handle)
        return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: report.bytes) { writer in
            defer { box.close() }
            var sent = 0
            while sent < report.bytes {
                guard let data = try box.handle.read(upToCount: 1 << 20), !data.isEmpty else { break }
                try await writer.write(ByteBuffer(bytes: data))
                sent += data.count
            }
            try await writer.finish(nil)
        })
    }

    final class FileBox: @unchecked Sendable {
        let handle: FileHandle
        init(_ h: FileHandle) { handle = h }
        func close() { try? handle.close() }
    }

    /// POST /v1/snapshots/import?on_conflict=fail|skip|replace&async=false with the snapshot
    /// file as the body (streamed to a temporary file, up to max_snapshot_bytes).
    func importSnapshot(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let q = request.uri.queryParameters
        let policyName = q.get("on_conflict") ?? "fail"
        guard let policy = ConflictPolicy(rawValue: policyName) else { throw APIError.badRequest("on_conflict must be fail, skip or replace, not '\(policyName)'") }
        let background = try Self.flag(q.get("async"), name: "async")
        guard !service.isShuttingDown else { throw APIError.shuttingDown }
        let limit = config.maxSnapshotBytes
        let tooLarge = APIError(.contentTooLarge, "payload_too_large", "the snapshot is larger than \(limit) bytes (serve.max_snapshot_bytes)")
        if let len = request.headers[.contentLength].flatMap({ Int($0) }), len > limit { throw tooLarge }
        // Uploads have their own lane: a slot from the first byte until the file is removed (after
        // the import), so at most max_concurrent_uploads files of up to max_snapshot_bytes exist.
        let slots = service.uploadSlots
        do { try await slots.acquire(deadline: .now) } catch {
            throw APIError.busy("\(slots.capacity) snapshot uploads are already in progress (serve.max_concurrent_uploads); retry later")
        }
        var handedOver = false
        defer { if !handedOver { slots.release() } }
        let path = service.temporaryFile("import")
        guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
            throw APIError(.internalServerError, "internal", "cannot create \(path) for the upload; check serve.tmp_dir")
        }
        let received: Int
        do {
            let box = FileBox(out)
            defer { box.close() }
            received = try await Self.receive(request.body, into: box, limit: limit, tooLarge: tooLarge,
                                              total: arrival + .nanoseconds(Int64(config.uploadTimeout * 1e9)), idle: config.uploadIdleTimeout)
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        guard received > 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw APIError.badRequest("the body is empty; send the snapshot file (as written by POST /v1/snapshots or anchorkv export)")
        }
        let service = self.service
        // A synchronous import waits for the lanes as long as an ingest would; a job, a day.
        let deadline = background ? ContinuousClock.now + .seconds(86400) : arrival + .nanoseconds(Int64(config.ingestTimeout * 1e9))
        let work: @Sendable (JobHandle?) async throws -> JSONValue = { handle in
            defer { try? FileManager.default.removeItem(atPath: path); slots.release() }
            let r = try await service.importSnapshot(path: path, onConflict: policy, deadline: deadline) { p in
                switch p {
                case .verified(let n, let total): handle?.report(done: n, total: total, message: "verifying")
                case .writing(let n): handle?.report(done: n, total: n, message: "writing \(n) documents in one atomic batch")
                }
            }
            return ["snapshot": Self.describe(r.manifest), "added": .array(r.added.map { .string($0) }), "replaced": .array(r.replaced.map { .string($0) }),
                    "unchanged": .array(r.unchanged.map { .string($0) }), "repaired": .array(r.repaired.map { .string($0) }), "skipped": .array(r.skipped.map { .string($0) }),
                    "bytes": .int(r.bytes), "seconds": .double(r.seconds), "mb_per_s": .double(r.megabytesPerSecond)]
        }
        handedOver = true  // `work` removes the file and releases the slot, run now or as a job
        if background {
            let job: JobStatus
            do {
                job = try startJob(kind: "import", exclusive: false, parameters: ["bytes": .int(received), "on_conflict": .string(policy.rawValue)]) { try await work($0) }
            } catch {
                try? FileManager.default.removeItem(atPath: path); slots.release()
                throw error
            }
            return .json(["job": job.json], status: .accepted, headers: [.location: "/v1/jobs/\(job.id)"])
        }
        return .json(try await work(nil))
    }

    /// Writes an upload's body to `out`, refusing it with 413 once more than `limit` bytes came
    /// and with 408 when it is still arriving at `total` or sends nothing for `idle` seconds.
    static func receive(_ body: RequestBody, into out: FileBox, limit: Int, tooLarge: APIError,
                        total: ContinuousClock.Instant, idle: Double) async throws -> Int {
        let start = ContinuousClock.now
        let progress = UploadProgress()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var received = 0
                for try await chunk in body {
                    try Task.checkCancellation()
                    received += chunk.readableBytes
                    if received > limit { throw tooLarge }
                    try out.handle.write(contentsOf: Data(chunk.readableBytesView))
                    progress.count.store(received, ordering: .relaxed)
                    progress.lastByte.store(Int64((ContinuousClock.now - start).seconds * 1e9), ordering: .relaxed)
                }
            }
            group.addTask {
                let idleNs = Int64(idle * 1e9)
                while true {
                    let idleEnd = start + .nanoseconds(progress.lastByte.load(ordering: .relaxed) + idleNs)
                    let now = ContinuousClock.now
                    if now >= total {
                        throw APIError(.requestTimeout, "upload_timeout",
                                       "the upload was still arriving after serve.upload_timeout_s; nothing was imported")
                    }
                    if now >= idleEnd {
                        throw APIError(.requestTimeout, "upload_timeout",
                                       "the upload sent nothing for \(idle) s (serve.upload_idle_timeout_s); nothing was imported")
                    }
                    try await Task.sleep(until: min(total, idleEnd), clock: .continuous)
                }
            }
            try await group.next()
            group.cancelAll()
        }
        return progress.count.load(ordering: .relaxed)
    }

    final class UploadProgress: Sendable {
        /// Nanoseconds from the upload's start to its last chunk, and the bytes written.
        let lastByte = Atomic<Int64>(0)
        let count = Atomic<Int>(0)
    }

    /// POST /v1/compact: `{"to_ratio": 15, "documents"?: [...], "older_than"?: "30d" | ISO 8601, "no_adapter"?: bool}`
    /// starts a compaction job (one at a time): 202 with the job.
    func compact(_ request: Request) async throws -> Response {
        var f = Fields(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)))
        guard let ratio = try f.int("to_ratio", in: 1...1000) else { throw APIError.badRequest("missing field 'to_ratio'") }
        let documents = try f.strings("documents", maxCount: 100_000)
        let olderThan = try f.string("older_than", maxBytes: 64).map(Self.parseAge)
        let noAdapter = try f.bool("no_adapter") ?? false
        try f.rejectUnknown()
        if let d = documents {
            guard !d.isEmpty else { throw APIError.badRequest("'documents' is empty; leave it out to compact every document") }
            let missing = try d.filter { try kb.store.document($0) == nil }
            if !missing.isEmpty { throw APIError.notFound("no document \(missing.map { "'\($0)'" }.joined(separator: ", ")) in the store") }
        }
        guard !service.isShuttingDown else { throw APIError.shuttingDown }
        let resolver = service.adapterResolver
        let adapter: SACAdapter?
        do { adapter = try await runBlocking(name: "anchorkv-adapter") { try resolver(ratio, noAdapter) } } catch let e as APIError { throw e } catch {
            throw APIError.badRequest("\(error)")
        }
        let service = self.service
        var parameters: [String: JSONValue] = ["to_ratio": .int(ratio), "adapter": .string(adapter?.fingerprint ?? "none")]
        if let documents { parameters["documents"] = .int(documents.count) }
        if let olderThan { parameters["older_than"] = .string(ISO8601DateFormatter().string(from: olderThan)) }
        let job = try startJob(kind: "compact", exclusive: true, parameters: .object(parameters)) { handle in
            guard let handle else { return .null }
            return try await runBlocking(name: "anchorkv-compact", flag: handle.flag) {
                try service.compact(ratio: ratio, adapter: adapter, documents: documents, olderThan: olderThan, handle: handle)
            }
        }
        return .json(["job": job.json], status: .accepted, headers: [.location: "/v1/jobs/\(job.id)"])
    }

    /// Starts a job, mapping the registry's refusals to 409 / 503.
    func startJob(kind: String, exclusive: Bool, parameters: JSONValue, work: @escaping @Sendable (JobHandle?) async throws -> JSONValue) throws -> JobStatus {
        do {
            return try service.jobs.start(kind: kind, exclusive: exclusive, parameters: parameters) { try await work($0) }
        } catch let r as JobRegistry.Refused {
            throw r.conflict ? APIError(.conflict, "conflict", r.reason) : APIError.shuttingDown
        }
    }

    static func flag(_ value: String?, name: String) throws -> Bool {
        switch value {
        case nil, "false", "0": return false
        case "true", "1": return true
        default: throw APIError.badRequest("query parameter '\(name)' must be true or false")
        }
    }

    /// An age (30d, 12h, 90m, 45s) before now, or an ISO 8601 date.
    static func parseAge(_ s: String) throws -> Date {
        if let d = ISO8601DateFormatter().date(from: s) { return d }
        let units: [Character: Double] = ["d": 86400, "h": 3600, "m": 60, "s": 1]
        if let u = s.last, let mult = units[u], let n = Double(s.dropLast()), n >= 0 { return Date().addingTimeInterval(-n * mult) }
        throw APIError.badRequest("'older_than' takes an age like 30d, 12h, 90m, 45s or an ISO 8601 date, not '\(s)'")
    }
}

extension APIError {
    /// Snapshot errors: a bad file is the client's (400), a clash with the store's content 409.
    static func from(snapshot e: SnapshotError) -> APIError {
        switch e {
        case .notASnapshot, .unsupportedVersion, .truncated, .corrupt: return APIError(.badRequest, "invalid_snapshot", e.description)
        case .modelMismatch, .conflict, .invalid: return APIError(.conflict, "conflict", e.description)
        case .unreadable: return APIError(.internalServerError, "internal", e.description)
        }
    }
}
