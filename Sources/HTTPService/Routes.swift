import AnchorKVCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Builds the router and the application of `anchorkv serve` (endpoints in docs/http-api.md).
public enum AnchorKVServer {
    public typealias Context = BasicRequestContext

    /// The HTTP application for `service`, bound to its config's host and port.
    public static func application(service: AnchorService, logger: Logger,
                                   onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
        let c = service.config
        return Application(
            router: router(service: service),
            server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(c.idleTimeout * 1000)))),
            configuration: .init(address: .hostname(c.host, port: c.port), serverName: "anchorkv"),
            onServerRunning: onServerRunning,
            logger: logger)
    }

    public static func router(service: AnchorService) -> Router<Context> {
        let router = Router(context: Context.self)
        // Outermost first: metrics see every final status, errors become JSON, then auth.
        router.add(middleware: MetricsMiddleware(metrics: service.metrics))
        router.add(middleware: ErrorMiddleware())
        if let token = service.config.apiToken { router.add(middleware: BearerAuthMiddleware(token: token)) }
        let h = Handlers(service: service)

        router.get("/health") { _, _ in h.health() }
        router.get("/metrics") { _, _ in try await h.metrics() }
        router.get("/v1/stats") { _, _ in try await h.stats() }
        router.post("/v1/documents") { req, _ in try await h.ingest(req) }
        router.get("/v1/documents") { req, _ in try await h.list(req) }
        router.get("/v1/documents/{id}") { req, ctx in try await h.get(req, id: try Handlers.id(ctx)) }
        router.delete("/v1/documents/{id}") { _, ctx in try await h.delete(id: try Handlers.id(ctx)) }
        router.get("/v1/documents/{id}/kv") { req, ctx in try await h.kv(req, id: try Handlers.id(ctx)) }
        router.post("/v1/query") { req, _ in try await h.query(req) }
        router.post("/v1/chat/completions") { req, _ in try await h.chatCompletions(req) }
        router.get("/v1/models") { _, _ in h.models() }
        router.post("/v1/snapshots") { req, _ in try await h.exportSnapshot(req) }
        router.post("/v1/snapshots/import") { req, _ in try await h.importSnapshot(req) }
        router.post("/v1/compact") { req, _ in try await h.compact(req) }
        router.get("/v1/jobs") { _, _ in h.jobs() }
        router.get("/v1/jobs/{id}") { _, ctx in try h.job(id: try Handlers.id(ctx)) }
        router.delete("/v1/jobs/{id}") { _, ctx in try h.cancelJob(id: try Handlers.id(ctx)) }
        return router
    }
}

/// The endpoint handlers. Request bodies are JSON objects read through `Fields`, so each
/// mistake gets its own 400; responses are JSON (`Response.json`).
struct Handlers: Sendable {
    let service: AnchorService
    var config: ServiceConfig { service.config }
    var core: KnowledgeService { service.core }

    /// The `{id}` path parameter, percent-decoded (ids may contain '/', sent as %2F).
    static func id(_ context: AnchorKVServer.Context) throws -> String {
        guard let raw = context.parameters.get("id"), let id = raw.removingPercentEncoding, !id.isEmpty else {
            throw APIError.badRequest("the id in the path is not valid percent-encoded UTF-8")
        }
        return id
    }

    /// Collects a body up to `limit` bytes (413 past it, before reading when Content-Length says so).
    static func body(_ request: Request, limit: Int, setting: String = "serve.max_body_bytes") async throws -> ByteBuffer {
        let tooLarge = { (n: String) in
            APIError(.contentTooLarge, "payload_too_large", "the request body is \(n) bytes; the limit is \(limit) (\(setting))")
        }
        if let len = request.headers[.contentLength].flatMap({ Int($0) }), len > limit { throw tooLarge("\(len)") }
        do { return try await request.body.collect(upTo: limit) } catch is NIOTooManyBytesError { throw tooLarge("more than \(limit)") }
    }

    // MARK: service

    func health() -> Response {
        let down = service.isShuttingDown
        return .json(["status": .string(down ? "shutting_down" : "ok"), "uptime_s": .double(service.uptimeSeconds)],
                     status: down ? .serviceUnavailable : .ok)
    }

    func metrics() async throws -> Response {
        let service = self.service
        let stats = try await runBlocking(name: "anchorkv-metrics") { try service.core.stats() }
        service.metrics.refreshStore(stats)
        let text = service.metrics.exposition()
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    func stats() async throws -> Response {
        let core = self.core
        let st = try await runBlocking(name: "anchorkv-stats") { try core.stats() }
        let q = service.querySlots.usage, i = service.ingestLane.usage
        return .json([
            "store": ["path": .string(st.store), "documents": .int(st.documents), "windows": .int(st.windows), "tokens": .int(st.tokens),
                      "anchors": .int(st.anchors), "kv_bytes": .int(st.kvBytes), "bytes_per_token": .double(st.bytesPerToken),
                      "disk_bytes": .int(st.diskBytes), "dtype": .string(st.dtype), "adapters": .object(st.adapters.mapValues { JSONValue.string($0) })],
            "model": ["name": .string(st.model), "fingerprint": .string(st.modelFingerprint)],
            "ingest": ["ratio": .int(core.ratio), "adapter": .string(core.adapterFingerprint), "window": .int(core.window),
                       "busy": .int(i.busy), "queued": .int(i.queued)],
            "queries": ["capacity": .int(service.querySlots.capacity), "busy": .int(q.busy), "queued": .int(q.queued),
                        "batching": .bool(service.batcher != nil), "decode_steps": .int(service.batcher?.stepStats.steps ?? 0),
                        "mean_batch": .double(service.batcher?.stepStats.meanBatch ?? 0)],
            "jobs": ["active": .int(service.jobs.active)],
            "uptime_s": .double(service.uptimeSeconds),
        ])
    }

    // MARK: documents

    /// The core's ingest report, each failure's error with its HTTP status.
    static func ingestJSON(_ report: IngestReport) -> JSONValue {
        guard case .object(var o) = JSONValue(encoding: report) else { return .null }
        o["documents"] = .array(zip(report.items, o["documents"]?.array ?? []).map { item, v in
            guard let e = item.error, case .object(var d) = v else { return v }
            d["error"] = APIError.from(core: e).json
            return .object(d)
        })
        return .object(o)
    }

    /// POST /v1/documents: `{"id", "text", "title"?}` or `{"documents": [...], "async"?: bool}`.
    func ingest(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let body = try RequestBodies.ingest(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)), config: config)
        let docs = body.documents, background = body.background
        guard !service.isShuttingDown else { throw APIError.shuttingDown }

        let service = self.service
        if background {
            let ids = docs
            let job: JobStatus
            do {
                job = try service.jobs.start(kind: "ingest", exclusive: false, parameters: ["documents": .int(docs.count)]) { handle in
                    let report = try await service.ingest(ids, deadline: .now + .seconds(86400), progress: { i, id in
                        handle.report(done: i, total: ids.count, message: id.isEmpty ? "done" : "ingesting \(id)")
                    }, stop: handle.flag)
                    return Self.ingestJSON(report)
                }
            } catch let r as JobRegistry.Refused {
                throw r.conflict ? APIError(.conflict, "conflict", r.reason) : APIError.shuttingDown
            }
            return .json(["job": job.json], status: .accepted, headers: [.location: "/v1/jobs/\(job.id)"])
        }
        let report = try await service.ingest(docs, deadline: arrival + .nanoseconds(Int64(config.ingestTimeout * 1e9)))
        // Nothing stored and something failed: answer with the first failure's status.
        let items = report.items
        if !items.contains(where: { $0.document != nil }), let first = items.first(where: { $0.status == .failed })?.error {
            var e = APIError.from(core: first)
            if items.count > 1 { e.message = "no document was stored; the first failure: \(first.message)" }
            throw e
        }
        return .json(Self.ingestJSON(report))
    }

    /// GET /v1/documents?limit=&offset=
    func list(_ request: Request) async throws -> Response {
        let q = request.uri.queryParameters
        func int(_ name: String, _ def: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let s = q.get(name) else { return def }
            guard let v = Int(s), range.contains(v) else { throw APIError.badRequest("query parameter '\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        let limit = try int("limit", 1000, 1...10000), offset = try int("offset", 0, 0...Int(Int32.max))
        let core = self.core
        return .json(JSONValue(encoding: try await runBlocking(name: "anchorkv-read") { try core.documents(limit: limit, offset: offset) }))
    }

    /// GET /v1/documents/{id}?windows=true
    func get(_ request: Request, id: String) async throws -> Response {
        let windows = try Self.flag(request.uri.queryParameters.get("windows"), name: "windows")
        return .json(JSONValue(encoding: try await service.document(id, windows: windows)))
    }

    func delete(id: String) async throws -> Response {
        try await service.delete(id)
        return .json(["deleted": .string(id)])
    }

    /// GET /v1/documents/{id}/kv?format=safetensors|json&dtype=f16|f32&data=true|false
    func kv(_ request: Request, id: String) async throws -> Response {
        let q = request.uri.queryParameters
        let format = q.get("format") ?? "safetensors"
        guard ["safetensors", "json"].contains(format) else { throw APIError.badRequest("format must be safetensors or json, not '\(format)'") }
        let dtype = q.get("dtype") ?? "f16"
        let withData = (q.get("data") ?? "true") != "false"
        let core = self.core
        if format == "json" && !withData {
            return .json(JSONValue(encoding: try await runBlocking(name: "anchorkv-kv") { try core.kvLayout(id, dtype: dtype) }))
        }
        // Streamed: the header (every record already read and checked), then each tensor as its
        // layer is read from the same RocksDB snapshot; one layer in memory.
        let download = try await runBlocking(name: "anchorkv-kv") { try core.kvFile(id, dtype: dtype) }
        if format == "json" {
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody { writer in
                try await writer.write(ByteBuffer(data: download.jsonHead()))
                for l in 0..<download.layers {
                    let part = try await runBlocking(name: "anchorkv-kv") { try download.jsonLayer(l) }
                    try await writer.write(ByteBuffer(data: part))
                }
                try await writer.write(ByteBuffer(data: download.jsonTail))
                try await writer.finish(nil)
            })
        }
        let filename = String(id.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }.prefix(100)) + ".akv"
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentDisposition: "attachment; filename=\"\(filename)\""],
                        body: ResponseBody(contentLength: download.fileBytes) { writer in
            try await writer.write(ByteBuffer(data: download.header))
            var current: (layer: Int, keys: Data, values: Data)?
            for t in download.tensors {
                if current?.layer != t.layer {
                    current = nil
                    current = try await runBlocking(name: "anchorkv-kv") {
                        let (k, v) = try download.layer(t.layer)
                        return (t.layer, k, v)
                    }
                }
                let bytes = t.isKey ? current!.keys : current!.values
                guard bytes.count == t.byteCount else {
                    throw APIError(.internalServerError, "internal", "layer \(t.layer) of '\(id)' has \(bytes.count) bytes, the header said \(t.byteCount)")
                }
                try await writer.write(ByteBuffer(data: bytes))
            }
            try await writer.finish(nil)
        })
    }

    // MARK: queries

    /// POST /v1/query: question, k, documents, max_tokens, stream.
    func query(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let (params, stream) = try RequestBodies.query(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)),
                                                       accept: request.headers[.accept] ?? "", config: config)
        let deadline = arrival + .nanoseconds(Int64(config.requestTimeout * 1e9))
        let flag = StopFlag(deadline: deadline)
        let service = self.service
        if !stream {
            let o = try await service.query(params, deadline: deadline, flag: flag)
            return .json(Self.queryJSON(o))
        }
        return try await sse(params, deadline: deadline, flag: flag)
    }

    /// The core's answer, with what serving adds: the time queued and why it stopped early.
    static func queryJSON(_ o: AnchorService.QueryOutcome) -> JSONValue {
        guard case .object(var a) = JSONValue(encoding: o.answer), case .object(var t) = a["timings"] else { return .null }
        t["queue_s"] = .double(o.queueSeconds)
        a["timings"] = .object(t)
        a["stopped"] = .optional(o.stopped)
        return .object(a)
    }

    enum StreamEvent: Sendable {
        /// Before the first token (the first frame a stream writes; a query that fails before it
        /// answers with a plain 4xx/5xx instead).
        case started
        case token(String, Int32)
        case done(AnchorService.QueryOutcome)
        case failed(APIError)

        /// This service's own framing (POST /v1/query with stream): `token`, `done`, `error` events.
        static func queryFrame(_ e: StreamEvent) -> String? {
            switch e {
            case .started: return nil
            case .token(let text, let id): return "event: token\ndata: " + String(decoding: JSONValue.object(["text": .string(text), "token": .int(Int(id))]).encoded(), as: UTF8.self) + "\n\n"
            case .done(let o): return "event: done\ndata: " + String(decoding: Handlers.queryJSON(o).encoded(), as: UTF8.self) + "\n\n"
            case .failed(let e): return "event: error\ndata: " + String(decoding: JSONValue.object(["error": e.json]).encoded(), as: UTF8.self) + "\n\n"
            }
        }
    }

    /// @unchecked Sendable: the iterator is used by one task at a time (the handler for the first
    /// event, then the response body writer, which runs after the handler returned).
    final class EventIterator: @unchecked Sendable {
        var iterator: AsyncStream<StreamEvent>.AsyncIterator
        init(_ s: AsyncStream<StreamEvent>) { iterator = s.makeAsyncIterator() }
        func next() async -> StreamEvent? { await iterator.next() }
    }

    /// Server-sent events of a query: each event written as `frame` makes it (nil: nothing),
    /// tokens as the answer is decoded, then the outcome (or an error). Errors before the first
    /// token are plain 4xx/5xx responses.
    func sse(_ params: KnowledgeService.Question, deadline: ContinuousClock.Instant, flag: StopFlag,
             frame: @escaping @Sendable (StreamEvent) -> String? = StreamEvent.queryFrame) async throws -> Response {
        let (events, sink) = AsyncStream<StreamEvent>.makeStream()
        let service = self.service
        let text = core.makeAnswerText()
        let work = Task {
            do {
                let started = Atomic<Bool>(false)
                let o = try await service.query(params, deadline: deadline, flag: flag) { tok in
                    if !started.exchange(true, ordering: .relaxed) { sink.yield(.started) }
                    sink.yield(.token(text.append(tok), tok))
                }
                if !started.load(ordering: .relaxed) { sink.yield(.started) }
                let rest = text.flush()
                if !rest.isEmpty { sink.yield(.token(rest, -1)) }
                sink.yield(.done(o))
            } catch {
                sink.yield(.failed(APIError.from(error)))
            }
            sink.finish()
        }
        let it = EventIterator(events)
        guard let first = await it.next() else { throw APIError(.internalServerError, "internal", "the query ended without a result") }
        if case .failed(let e) = first { throw e }
        let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var event: StreamEvent? = first
            do {
                while let e = event {
                    if let text = frame(e) { try await writer.write(ByteBuffer(string: text)) }
                    event = await it.next()
                }
                try await writer.finish(nil)
            } catch {
                flag.stop("client disconnected")
                await work.value
                throw error
            }
        })
    }

    // MARK: jobs

    func jobs() -> Response { .json(["jobs": .array(service.jobs.list().map(\.json))]) }

    func job(id: String) throws -> Response {
        guard let j = service.jobs.status(id) else { throw APIError.notFound("no job '\(id)' (finished jobs are kept for a while, the last \(config.keptJobs))") }
        return .json(j.json)
    }

    func cancelJob(id: String) throws -> Response {
        guard service.jobs.cancel(id), let j = service.jobs.status(id) else { throw APIError.notFound("no job '\(id)'") }
        return .json(j.json, status: .accepted)
    }
}
