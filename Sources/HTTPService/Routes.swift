import Foundation
import Tokenizer
import Hummingbird
import KVStore
import KnowledgeBase
import LLM
import Logging
import NIOCore
import SAC

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
        router.get("/v1/documents") { req, _ in try h.list(req) }
        router.get("/v1/documents/{id}") { req, ctx in try h.get(req, id: try Handlers.id(ctx)) }
        router.delete("/v1/documents/{id}") { _, ctx in try h.delete(id: try Handlers.id(ctx)) }
        router.get("/v1/documents/{id}/kv") { req, ctx in try await h.kv(req, id: try Handlers.id(ctx)) }
        router.post("/v1/query") { req, _ in try await h.query(req) }
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
    var kb: KnowledgeBase { service.kb }

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
        try await runBlocking(name: "anchorkv-metrics") { try service.metrics.refreshStore(service.kb.store) }
        let text = service.metrics.exposition()
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    func stats() async throws -> Response {
        let kb = self.kb
        let (docs, lex, disk) = try await runBlocking(name: "anchorkv-stats") {
            (try kb.store.documents(), try kb.store.lexStats(), ServiceMetrics.folderBytes(kb.store.path))
        }
        let tokens = docs.reduce(0) { $0 + $1.tokens }, bytes = docs.reduce(0) { $0 + $1.kvBytes }
        let q = service.querySlots.usage, i = service.ingestLane.usage
        let m = kb.store.manifest
        return .json([
            "store": ["path": .string(kb.store.path), "documents": .int(docs.count), "windows": .int(lex.windows), "tokens": .int(tokens),
                      "anchors": .int(docs.reduce(0) { $0 + $1.anchors }), "kv_bytes": .int(bytes),
                      "bytes_per_token": .double(tokens > 0 ? Double(bytes) / Double(tokens) : 0), "disk_bytes": .int(disk),
                      "dtype": .string(m.dtype), "adapters": .object(m.adapters.mapValues { .string($0) })],
            "model": ["name": .string(m.modelName), "fingerprint": .string(m.modelFingerprint)],
            "ingest": ["ratio": .int(kb.ratio), "adapter": .string(kb.adapter?.fingerprint ?? "none"), "busy": .int(i.busy), "queued": .int(i.queued)],
            "queries": ["capacity": .int(service.querySlots.capacity), "busy": .int(q.busy), "queued": .int(q.queued)],
            "jobs": ["active": .int(service.jobs.active)],
            "uptime_s": .double(service.uptimeSeconds),
        ])
    }

    // MARK: documents

    static func describe(_ d: DocumentRecord) -> JSONValue {
        ["id": .string(d.id), "title": .string(d.title), "source": .string(d.source), "ratio": .int(d.ratio),
         "adapter": .string(d.adapter ?? "none"), "windows": .int(d.windows), "tokens": .int(d.tokens), "anchors": .int(d.anchors),
         "kv_bytes": .int(d.kvBytes), "bytes_per_token": .double(d.tokens > 0 ? Double(d.kvBytes) / Double(d.tokens) : 0),
         "content_sha256": .string(d.contentHash), "ingested_at": .string(d.ingestedAt)]
    }

    /// One document of an ingest body: id, text, optional title and source.
    func parseDocument(_ v: JSONValue, path: String) throws -> SourceDocument {
        guard let o = v.object else { throw APIError.badRequest("'\(path)' must be an object with id and text") }
        var f = Fields(o, path: path)
        let id = try f.string("id", required: true, maxBytes: 512)!
        guard !id.isEmpty, !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError.badRequest("'\(path.isEmpty ? "" : path + ".")id' must be 1 to 512 bytes without control characters")
        }
        let text = try f.string("text", required: true)!
        guard !text.allSatisfy(\.isWhitespace) else { throw APIError.badRequest("document '\(id)': the text is empty") }
        guard !text.utf8.contains(0) else { throw APIError.badRequest("document '\(id)': the text contains NUL bytes; send text, not binary") }
        let title = try f.string("title", maxBytes: 1024) ?? id
        let source = try f.string("source", maxBytes: 1024) ?? "http"
        try f.rejectUnknown()
        return SourceDocument(id: id, title: title, text: text, origin: source)
    }

    static func ingestJSON(_ items: [AnchorService.IngestItem], kb: KnowledgeBase) -> JSONValue {
        var counts: [String: Int] = [:]
        var tokens = 0, bytes = 0, seconds = 0.0
        let docs: [JSONValue] = items.map { it in
            counts[it.status, default: 0] += 1
            var o: [String: JSONValue] = ["id": .string(it.id), "status": .string(it.status)]
            if let r = it.record {
                o["windows"] = .int(r.windows); o["tokens"] = .int(r.tokens); o["anchors"] = .int(r.anchors); o["kv_bytes"] = .int(r.kvBytes)
                o["bytes_per_token"] = .double(r.tokens > 0 ? Double(r.kvBytes) / Double(r.tokens) : 0)
                o["seconds"] = .double(it.seconds)
                if it.status != "unchanged" { tokens += r.tokens; bytes += r.kvBytes; seconds += it.seconds }
            }
            if let e = it.error { o["error"] = e.json }
            return .object(o)
        }
        var summary: [String: JSONValue] = ["tokens": .int(tokens), "kv_bytes": .int(bytes), "seconds": .double(seconds),
                                            "tokens_per_second": .double(seconds > 0 ? Double(tokens) / seconds : 0)]
        for s in ["added", "replaced", "unchanged", "repaired", "failed", "not_attempted"] { summary[s] = .int(counts[s] ?? 0) }
        return ["documents": .array(docs), "summary": .object(summary), "ratio": .int(kb.ratio), "adapter": .string(kb.adapter?.fingerprint ?? "none")]
    }

    /// POST /v1/documents: `{"id", "text", "title"?}` or `{"documents": [...], "async"?: bool}`.
    func ingest(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let obj = try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes))
        var docs: [SourceDocument] = []
        var background = false
        if obj["documents"] != nil {
            var f = Fields(obj)
            let list = try f.array("documents") ?? []
            background = try f.bool("async") ?? false
            try f.rejectUnknown()
            guard !list.isEmpty else { throw APIError.badRequest("'documents' is empty") }
            guard list.count <= config.maxDocumentsPerRequest else {
                throw APIError.badRequest("\(list.count) documents in one request; the limit is \(config.maxDocumentsPerRequest) (serve.max_documents_per_request)")
            }
            docs = try list.enumerated().map { try parseDocument($0.element, path: "documents[\($0.offset)]") }
        } else {
            docs = [try parseDocument(.object(obj), path: "")]
        }
        var seen = Set<String>()
        for d in docs where !seen.insert(d.id).inserted { throw APIError.badRequest("document id '\(d.id)' appears twice in the request") }
        guard !service.isShuttingDown else { throw APIError.shuttingDown }

        let service = self.service, kb = self.kb
        if background {
            let ids = docs
            let job: JobStatus
            do {
                job = try service.jobs.start(kind: "ingest", exclusive: false, parameters: ["documents": .int(docs.count)]) { handle in
                    let items = try await service.ingest(ids, deadline: .now + .seconds(86400), progress: { i, id in
                        handle.report(done: i, total: ids.count, message: id.isEmpty ? "done" : "ingesting \(id)")
                    }, stop: handle.flag)
                    return Self.ingestJSON(items, kb: kb)
                }
            } catch let r as JobRegistry.Refused {
                throw r.conflict ? APIError(.conflict, "conflict", r.reason) : APIError.shuttingDown
            }
            return .json(["job": job.json], status: .accepted, headers: [.location: "/v1/jobs/\(job.id)"])
        }
        let items = try await service.ingest(docs, deadline: arrival + .nanoseconds(Int64(config.ingestTimeout * 1e9)))
        // Nothing stored and something failed: answer with the first failure's status.
        if !items.contains(where: { $0.record != nil }), let first = items.first(where: { $0.status == "failed" })?.error {
            var e = first
            if items.count > 1 { e.message = "no document was stored; the first failure: \(first.message)" }
            throw e
        }
        return .json(Self.ingestJSON(items, kb: kb))
    }

    /// GET /v1/documents?limit=&offset=
    func list(_ request: Request) throws -> Response {
        let q = request.uri.queryParameters
        func int(_ name: String, _ def: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let s = q.get(name) else { return def }
            guard let v = Int(s), range.contains(v) else { throw APIError.badRequest("query parameter '\(name)' must be an integer in \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        let limit = try int("limit", 1000, 1...10000), offset = try int("offset", 0, 0...Int(Int32.max))
        let docs = try kb.store.documents()
        let page = docs.dropFirst(offset).prefix(limit)
        return .json(["documents": .array(page.map(Self.describe)), "total": .int(docs.count), "limit": .int(limit), "offset": .int(offset)])
    }

    /// GET /v1/documents/{id}?windows=true
    func get(_ request: Request, id: String) throws -> Response {
        let d = try service.document(id)
        var o = Self.describe(d).object!
        if request.uri.queryParameters.get("windows") == "true" {
            o["window_texts"] = .array(try (0..<d.windows).map { .string(try kb.store.window(d, $0).text) })
        }
        return .json(.object(o))
    }

    func delete(id: String) throws -> Response {
        try service.delete(id)
        return .json(["deleted": .string(id)])
    }

    /// GET /v1/documents/{id}/kv?format=safetensors|json&dtype=f16|f32&data=true|false
    func kv(_ request: Request, id: String) async throws -> Response {
        let q = request.uri.queryParameters
        let format = q.get("format") ?? "safetensors"
        guard ["safetensors", "json"].contains(format) else { throw APIError.badRequest("format must be safetensors or json, not '\(format)'") }
        let dtypeName = q.get("dtype") ?? "f16"
        guard let dtype = KVFile.DType(rawValue: dtypeName) else { throw APIError.badRequest("dtype must be f16 or f32, not '\(dtypeName)'") }
        let withData = (q.get("data") ?? "true") != "false"
        if format == "json" {
            let (doc, ctx) = try await service.documentKV(id)
            var o = layoutJSON(doc: doc, ctx: ctx, dtype: dtype).object!
            if withData {
                o["layers"] = .array((0..<ctx.layerCount).map { l in
                    ["keys": .string(Self.base64(ctx.keys[l], dtype)), "values": .string(Self.base64(ctx.values[l], dtype))]
                })
            }
            return .json(.object(o))
        }
        // Streamed: the header (from the layout, every record already read and checked), then
        // each tensor as its layer is read from the same RocksDB snapshot; one layer in memory.
        let (doc, layout, snapshot) = try await service.documentKVLayout(id)
        let header = try KVFile.header(layout, dtype: dtype, extra: kvMetadata(doc: doc, layout: layout, dtype: dtype))
        let filename = String(doc.id.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }.prefix(100)) + ".akv"
        let kb = self.kb
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentDisposition: "attachment; filename=\"\(filename)\""],
                        body: ResponseBody(contentLength: header.fileBytes) { writer in
            try await writer.write(ByteBuffer(data: header.bytes))
            var current: (layer: Int, keys: Data, values: Data)?
            for t in header.tensors {
                if current?.layer != t.layer {
                    current = nil
                    current = try await runBlocking(name: "anchorkv-kv") {
                        let (k, v) = try kb.documentLayer(doc, layer: t.layer, snapshot: snapshot)
                        return (t.layer, KVFile.tensorBytes(k, dtype: dtype), KVFile.tensorBytes(v, dtype: dtype))
                    }
                }
                let bytes = t.isKey ? current!.keys : current!.values
                guard bytes.count == t.byteCount else {
                    throw APIError(.internalServerError, "internal", "layer \(t.layer) of '\(doc.id)' has \(bytes.count) bytes, the header said \(t.byteCount)")
                }
                try await writer.write(ByteBuffer(data: bytes))
            }
            try await writer.finish(nil)
        })
    }

    /// The string metadata of a KV download besides the format's own (document, model, layout).
    func kvMetadata(doc: DocumentRecord, layout: CompressedContext, dtype: KVFile.DType) -> [String: String] {
        ["document_id": doc.id, "document_title": doc.title, "model_name": kb.model.name,
         "layout": String(decoding: layoutJSON(doc: doc, ctx: layout, dtype: dtype).encoded(), as: UTF8.self)]
    }

    /// What another engine needs to use the KV: shapes, positions, RoPE, and how SAC decodes.
    func layoutJSON(doc: DocumentRecord, ctx: CompressedContext, dtype: KVFile.DType) -> JSONValue {
        let c = kb.model.config
        return [
            "format": .string(KVFile.formatName), "format_version": .string(KVFile.formatVersion),
            "document": Self.describe(doc),
            "model": ["name": .string(kb.model.name), "fingerprint": .string(ctx.modelFingerprint), "layers": .int(c.layerCount),
                      "heads": .int(c.headCount), "kv_heads": .int(c.kvHeadCount), "head_dim": .int(c.headDim), "kv_dim": .int(c.kvDim),
                      "rope_theta": .double(c.ropeTheta), "rope_scaling": .optional(c.ropeScaling?.type),
                      "rope_layout": "rotate_half (Hugging Face order)", "context_length": .int(c.contextLength)],
            "kv": ["ratio": .int(ctx.ratio), "adapter": .string(ctx.adapterFingerprint ?? "none"), "anchor_selection": .string(ctx.selection),
                   "window": .int(SACLayout.defaults(for: kb.model).window), "context_tokens": .int(ctx.contextLength),
                   "anchors": .int(ctx.anchorCount), "windows": .int(ctx.windowAnchorCounts.count),
                   "window_anchor_counts": .array(ctx.windowAnchorCounts.map { .int($0) }), "positions": .array(ctx.positions.map { .int(Int($0)) }),
                   "dtype": .string(dtype.rawValue), "shape": [.int(ctx.anchorCount), .int(ctx.kvDim)],
                   "byte_order": "little-endian", "tensor_names": "layer{l}.k and layer{l}.v (safetensors); layers[l].keys/.values (json, base64)",
                   "keys": "before RoPE: rotate each anchor's key at its position (rotate-half, rope_theta) before attention",
                   "decoding": "past KV = the anchors at their positions; with an adapter, its [LM] embedding goes at position context_tokens and the question segment follows; without one the question starts at context_tokens + 1"],
        ]
    }

    static func base64(_ v: [Float], _ dtype: KVFile.DType) -> String {
        switch dtype {
        case .f16: return v.map { Float16($0) }.withUnsafeBytes { Data($0) }.base64EncodedString()
        case .f32: return v.withUnsafeBytes { Data($0) }.base64EncodedString()
        }
    }

    // MARK: queries

    /// POST /v1/query: question, k, documents, max_tokens, stream.
    func query(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        var f = Fields(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)))
        let question = try f.string("question", required: true, maxBytes: 16 << 10)!
        guard !question.allSatisfy(\.isWhitespace) else { throw APIError.badRequest("'question' is empty") }
        let k = try f.int("k", in: 1...config.maxK)
        let docs = try f.strings("documents", maxCount: 1024)
        if let docs, docs.isEmpty { throw APIError.badRequest("'documents' is empty; leave it out to search every document") }
        let maxTokens = try f.int("max_tokens", in: 1...config.maxAnswerTokens) ?? config.defaultMaxTokens
        let accept = request.headers[.accept] ?? ""
        let stream = try f.bool("stream") ?? accept.contains("text/event-stream")
        try f.rejectUnknown()

        // With documents and no k: every window of those documents (as the CLI's --doc).
        let params = AnchorService.QueryParameters(question: question, k: docs == nil ? (k ?? config.defaultK) : k, documents: docs, maxTokens: maxTokens)
        let deadline = arrival + .nanoseconds(Int64(config.requestTimeout * 1e9))
        let flag = StopFlag(deadline: deadline)
        let service = self.service, kb = self.kb
        if !stream {
            let o = try await service.query(params, deadline: deadline, flag: flag)
            return .json(Self.queryJSON(o, kb: kb))
        }
        return try await sse(params, deadline: deadline, flag: flag)
    }

    static func queryJSON(_ o: AnchorService.QueryOutcome, kb: KnowledgeBase) -> JSONValue {
        let r = o.result
        return [
            "answer": .string(r.answer), "answer_tokens": .int(r.answerTokens.count), "stopped": .optional(o.stopped),
            "citations": .array(r.citations.map {
                ["document": .string($0.document), "title": .string($0.title), "window": .int($0.window), "score": .optional($0.score), "snippet": .string($0.snippet)]
            }),
            "timings": ["queue_s": .double(o.queueSeconds), "retrieve_s": .double(r.retrieveSeconds), "load_s": .double(r.loadSeconds),
                        "first_token_s": .double(r.firstTokenSeconds), "decode_s": .double(r.decodeSeconds), "total_s": .double(r.totalSeconds)],
            "context_tokens": .int(r.contextTokens), "anchors": .int(r.anchors), "ratio": .int(kb.ratio),
        ]
    }

    enum StreamEvent: Sendable {
        case token(String, Int32)
        case done(JSONValue)
        case failed(APIError)

        var frame: String {
            switch self {
            case .token(let text, let id): return "event: token\ndata: " + String(decoding: JSONValue.object(["text": .string(text), "token": .int(Int(id))]).encoded(), as: UTF8.self) + "\n\n"
            case .done(let v): return "event: done\ndata: " + String(decoding: v.encoded(), as: UTF8.self) + "\n\n"
            case .failed(let e): return "event: error\ndata: " + String(decoding: JSONValue.object(["error": e.json]).encoded(), as: UTF8.self) + "\n\n"
            }
        }
    }

    /// Token text for SSE: whole UTF-8 characters only (a character split across tokens waits).
    final class TokenText: @unchecked Sendable {
        var decoder: StreamingDecoder
        init(_ model: LlamaModel) { decoder = model.tokenizer.makeStreamingDecoder(skipSpecial: true) }
    }

    final class EventIterator: @unchecked Sendable {
        var iterator: AsyncStream<StreamEvent>.AsyncIterator
        init(_ s: AsyncStream<StreamEvent>) { iterator = s.makeAsyncIterator() }
        func next() async -> StreamEvent? { await iterator.next() }
    }

    /// Server-sent events: `token` events as the answer is decoded, then `done` with the same
    /// object as the JSON answer (or `error`). Errors before the first token are plain 4xx/5xx.
    func sse(_ params: AnchorService.QueryParameters, deadline: ContinuousClock.Instant, flag: StopFlag) async throws -> Response {
        let (events, sink) = AsyncStream<StreamEvent>.makeStream()
        let service = self.service, kb = self.kb
        let text = TokenText(kb.model)
        let work = Task {
            do {
                let o = try await service.query(params, deadline: deadline, flag: flag) { tok in
                    sink.yield(.token(text.decoder.append(tok), tok))
                }
                let rest = text.decoder.flush()
                if !rest.isEmpty { sink.yield(.token(rest, -1)) }
                sink.yield(.done(Self.queryJSON(o, kb: kb)))
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
                    try await writer.write(ByteBuffer(string: e.frame))
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
