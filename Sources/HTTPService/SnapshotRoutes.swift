import AnchorKVCore
import Foundation
import Hummingbird
import NIOCore
import Synchronization

extension AnchorService {
    /// The file an export is written to before it is streamed, or an upload before it is imported.
    func temporaryFile(_ kind: String, extension ext: String = "akvs") -> String {
        let dir = config.tmpDir.isEmpty ? FileManager.default.temporaryDirectory.path : config.tmpDir
        return (dir as NSString).appendingPathComponent("anchorkv-\(kind)-\(UUID().uuidString).\(ext)")
    }

    /// Exports the store (or some documents) from one RocksDB snapshot to a temporary file and
    /// returns it opened and already unlinked: the space goes back when the handle is closed.
    func exportSnapshot(documents: [String]?, deadline: ContinuousClock.Instant) async throws -> (FileHandle, ExportResult) {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await acquire(snapshotLane, until: deadline, what: "the snapshot lane (one export or import at a time)")
        defer { snapshotLane.release() }
        let path = temporaryFile("export")
        return try await runBlocking(name: "anchorkv-export") { [core] in
            defer { try? FileManager.default.removeItem(atPath: path) }
            let report = try core.export(documents: documents, to: path)
            guard let handle = FileHandle(forReadingAtPath: path) else { throw APIError(.internalServerError, "internal", "cannot reopen the export \(path)") }
            return (handle, report)
        }
    }

    /// Imports a snapshot file (the core verifies all of it before it writes, then writes
    /// everything in one batch). Runs in the writers' lane.
    func importSnapshot(path: String, onConflict: ConflictPolicy, deadline: ContinuousClock.Instant,
                        progress: (@Sendable (ImportProgress) -> Void)? = nil) async throws -> ImportResult {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await acquire(snapshotLane, until: deadline, what: "the snapshot lane (one export or import at a time)")
        defer { snapshotLane.release() }
        try await acquire(ingestLane, until: deadline, what: "the ingest lane (imports write like ingests)")
        defer { ingestLane.release() }
        let logger = self.logger
        return try await runBlocking(name: "anchorkv-import") { [core] in
            let r = try core.importSnapshot(file: path, onConflict: onConflict) { progress?($0) }
            for (ratio, fp) in r.undecodable.sorted(by: { $0.key < $1.key }) {
                logger.warning("imported documents at ratio \(ratio) use adapter \(fp), which the config does not have; queries on them fail until it is configured")
            }
            return r
        }
    }
}

extension Handlers {
    /// POST /v1/snapshots: `{"documents": [...]}` (optional; all when left out). The snapshot is
    /// written whole from one RocksDB snapshot first (an export that fails is an error, never a
    /// truncated download), then streamed.
    func exportSnapshot(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let raw = try await Self.body(request, limit: config.maxBodyBytes)
        let documents = try RequestBodies.export(raw)
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

    /// @unchecked Sendable: FileHandle is not marked Sendable; each box is read or written by one
    /// task at a time (the body writer, or the upload receiver) and closed once.
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
            return JSONValue(encoding: r)
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
        let body = try RequestBodies.compact(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)))
        let ratio = body.ratio, documents = body.documents, olderThan = body.olderThan, noAdapter = body.noAdapter
        if let d = documents {
            let missing = try await runBlocking(name: "anchorkv-read") { [core = service.core] in
                d.filter { (try? core.document($0)) == nil }
            }
            if !missing.isEmpty { throw CoreError.noDocuments(missing) }
        }
        guard !service.isShuttingDown else { throw APIError.shuttingDown }
        let choice = AdapterChoice(ratio: ratio, noAdapter: noAdapter)
        let core = service.core
        // The adapter is resolved now, so a missing one is this request's 4xx, not a failed job.
        let adapter = try await runBlocking(name: "anchorkv-adapter") { try core.adapterFingerprint(for: choice) }
        var parameters: [String: JSONValue] = ["to_ratio": .int(ratio), "adapter": .string(adapter)]
        if let documents { parameters["documents"] = .int(documents.count) }
        if let olderThan { parameters["older_than"] = .string(ISO8601DateFormatter().string(from: olderThan)) }
        let job = try startJob(kind: "compact", exclusive: true, parameters: .object(parameters)) { handle in
            guard let handle else { return .null }
            let r = try await runBlocking(name: "anchorkv-compact", flag: handle.flag) {
                try core.compact(toRatio: ratio, adapter: choice, documents: documents, olderThan: olderThan, stop: handle.flag) { done, total, message in
                    handle.report(done: done, total: total, message: message)
                }
            }
            return JSONValue(encoding: r)
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
}

