import Foundation
import KVStore
import KnowledgeBase
import LLM
import Logging
import SAC
import ServiceLifecycle
import Synchronization

/// The knowledge base behind the HTTP routes: one model and one store shared by every request.
///
/// Concurrency (checked against the engine): `LlamaModel` is immutable after loading and its
/// weights are shared, never copied; every query's decoder makes its own `InferenceSession`
/// (KV cache and scratch buffers), so queries run in parallel, up to
/// `maxConcurrentQueries` at once. The SAC encoder holds one session that it reuses, so
/// ingests go through one lane, one document at a time, in parallel with the queries. RocksDB
/// is thread-safe and every document write is one atomic batch; KVStore serialises writers.
/// The CKernels spin pool runs one job at a time and callers that find it busy run inline.
/// Model work runs on threads of its own (`runBlocking`), never on the pool that serves HTTP.
public final class AnchorService: Sendable {
    public let kb: KnowledgeBase
    public let config: ServiceConfig
    public let metrics: ServiceMetrics
    public let jobs: JobRegistry
    let querySlots: AsyncSemaphore
    let ingestLane: AsyncSemaphore
    /// One snapshot export or import at a time (each can hold a copy of the store on disk).
    let snapshotLane: AsyncSemaphore
    /// Snapshot uploads held at once, from their first byte until their file is removed.
    let uploadSlots: AsyncSemaphore
    let adapterResolver: AdapterResolver
    let started = ContinuousClock.now
    private let stopping = Atomic<Bool>(false)
    let logger: Logger

    /// `adapterResolver` picks the adapter of a compaction's target ratio; the default knows
    /// only the service's own ratio, ratio 1 (full KV) and training-free anchors.
    public init(kb: KnowledgeBase, config: ServiceConfig, metrics: ServiceMetrics = ServiceMetrics(), logger: Logger? = nil,
                adapterResolver: AdapterResolver? = nil) throws {
        try config.validate()
        self.kb = kb
        self.config = config
        self.metrics = metrics
        self.logger = logger ?? Logger(label: "anchorkv")
        jobs = JobRegistry(keep: config.keptJobs)
        querySlots = AsyncSemaphore(permits: config.maxConcurrentQueries, maxWaiters: config.maxQueuedRequests)
        ingestLane = AsyncSemaphore(permits: 1, maxWaiters: config.maxQueuedRequests)
        snapshotLane = AsyncSemaphore(permits: 1, maxWaiters: 4)
        uploadSlots = AsyncSemaphore(permits: config.maxConcurrentUploads, maxWaiters: 0)
        self.adapterResolver = adapterResolver ?? { [kb] ratio, noAdapter in
            if noAdapter || (ratio == 1 && kb.adapter == nil) { return nil }
            if ratio == kb.ratio { return kb.adapter }
            throw APIError.badRequest("no SAC adapter for ratio \(ratio) is configured (sac.adapters); send \"no_adapter\": true for training-free anchors")
        }
        // A store holding this ratio with another adapter is refused now, not at the first
        // ingest; the registration itself goes into the first document's batch (a server that
        // starts and stores nothing leaves no registration behind to block another adapter).
        try kb.store.checkAdapter(ratio: kb.ratio, fingerprint: kb.adapter?.fingerprint)
    }

    public var isShuttingDown: Bool { stopping.load(ordering: .acquiring) }

    /// Stops taking new work; in-flight ingests stop after their current document, jobs at their
    /// next safe point. Returns when the jobs have stopped.
    public func beginShutdown() async {
        stopping.store(true, ordering: .releasing)
        await jobs.shutdown()
    }

    func deadline(_ seconds: Double) -> ContinuousClock.Instant { .now + .nanoseconds(Int64(seconds * 1e9)) }

    /// Waits for a permit, mapping the semaphore's refusals to 503/504.
    func acquire(_ sem: AsyncSemaphore, until deadline: ContinuousClock.Instant, what: String) async throws {
        do { try await sem.acquire(deadline: deadline) } catch let f as AsyncSemaphore.Failure {
            switch f {
            case .queueFull: throw APIError.busy("\(sem.maxWaiters) requests are already waiting for \(what); retry shortly")
            case .timedOut: throw APIError.timeout("timed out waiting for \(what)")
            }
        }
    }

    // MARK: documents

    public struct IngestItem: Sendable {
        public var id: String
        public var status: String  // added, replaced, unchanged, failed, not_attempted
        public var record: DocumentRecord?
        public var seconds: Double = 0
        public var error: APIError?
    }

    /// Ingests documents in order, one atomic write each, through the ingest lane. Documents not
    /// started when the request's deadline passes or the service shuts down are `not_attempted`.
    public func ingest(_ docs: [SourceDocument], deadline: ContinuousClock.Instant, progress: (@Sendable (Int, String) -> Void)? = nil,
                       stop: StopFlag? = nil) async throws -> [IngestItem] {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await acquire(ingestLane, until: deadline, what: "the ingest lane (one ingest at a time)")
        defer { ingestLane.release() }
        let flag = stop ?? StopFlag(deadline: deadline)
        return try await runBlocking(name: "anchorkv-ingest", flag: flag) { [self] in
            var out: [IngestItem] = []
            for (i, doc) in docs.enumerated() {
                if flag.shouldStop || isShuttingDown {
                    let why = isShuttingDown ? "the service is shutting down" : flag.why == "timeout" ? "the request timed out" : "the request was cancelled"
                    out.append(IngestItem(id: doc.id, status: "not_attempted",
                                          error: APIError(.serviceUnavailable, "not_attempted", "\(why) before this document was started; nothing of it was stored")))
                    continue
                }
                progress?(i, doc.id)
                do {
                    let o = try kb.ingest(doc)
                    metrics.ingested(status: o.status.rawValue, tokens: o.record.tokens, seconds: o.seconds)
                    out.append(IngestItem(id: doc.id, status: o.status.rawValue, record: o.record, seconds: o.seconds))
                } catch {
                    metrics.ingested(status: "failed", tokens: 0, seconds: 0)
                    let e = APIError.from(error)
                    if e.status.code >= 500 { logger.error("ingest \(doc.id): \(error)") }
                    out.append(IngestItem(id: doc.id, status: "failed", error: e))
                }
            }
            progress?(docs.count, "")
            return out
        }
    }

    public func document(_ id: String) throws -> DocumentRecord {
        guard let d = try kb.store.document(id) else { throw APIError.notFound("no document '\(id)' in the store") }
        return d
    }

    public func delete(_ id: String) throws {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        guard try kb.store.delete(id) else { throw APIError.notFound("no document '\(id)' in the store") }
    }

    /// The whole document's anchor KV in order, at the positions it was encoded with.
    public func documentKV(_ id: String) async throws -> (DocumentRecord, CompressedContext) {
        try await runBlocking(name: "anchorkv-kv") { [self] in
            try retryingConcurrentChange {
                // The record and every window's KV from one RocksDB snapshot: a replace or
                // compaction landing meanwhile is wholly seen or not at all.
                let snap = kb.store.db.snapshot()
                guard let d = try kb.store.document(id, snapshot: snap) else { throw APIError.notFound("no document '\(id)' in the store") }
                return (d, try kb.context(of: (0..<d.windows).map { (d, $0) }, snapshot: snap))
            }
        }
    }

    /// A whole document's KV for a streamed download: its record and layout (every record read
    /// and checked, the tensors not kept) from one RocksDB snapshot, returned with the snapshot so
    /// the layers streamed afterwards come from the same view.
    public func documentKVLayout(_ id: String) async throws -> (DocumentRecord, CompressedContext, RocksDB.Snapshot) {
        try await runBlocking(name: "anchorkv-kv") { [self] in
            let snap = kb.store.db.snapshot()
            guard let d = try kb.store.document(id, snapshot: snap) else { throw APIError.notFound("no document '\(id)' in the store") }
            return (d, try kb.layout(of: d, snapshot: snap), snap)
        }
    }

    /// Reads that meet a document being replaced or deleted between its record and its keys see
    /// a missing key; the read is retried (the writer's batch is atomic, so the retry sees either
    /// the old or the new document whole). Real corruption fails the same way every time.
    func retryingConcurrentChange<T>(attempts: Int = 3, canRetry: () -> Bool = { true }, _ body: () throws -> T) throws -> T {
        var attempt = 1
        while true {
            do { return try body() } catch let e as StoreError {
                guard case .corruptRecord(_, _, _, let reason) = e, reason.contains("missing"), attempt < attempts, canRetry() else { throw e }
                attempt += 1
                logger.info("read met a concurrent change (\(e)); retrying")
            }
        }
    }

    // MARK: queries

    public struct QueryParameters: Sendable {
        public var question: String
        public var k: Int?
        public var documents: [String]?
        public var maxTokens: Int
    }

    public struct QueryOutcome: Sendable {
        public var result: QueryResult
        public var queueSeconds: Double
        public var stopped: String?
    }

    /// Answers a question with a decode slot; `onToken` gets each answer token as it is made.
    /// Throws 404 for unknown documents, 503 when the queue is full, 504 past the deadline.
    public func query(_ p: QueryParameters, deadline: ContinuousClock.Instant, flag: StopFlag,
                      onToken: @escaping @Sendable (Int32) -> Void = { _ in }) async throws -> QueryOutcome {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        if let ids = p.documents {
            let missing = try ids.filter { try kb.store.document($0) == nil }
            if !missing.isEmpty { throw APIError.notFound("no document \(missing.map { "'\($0)'" }.joined(separator: ", ")) in the store") }
        }
        let queued = ContinuousClock.now
        try await acquire(querySlots, until: deadline, what: "a query slot")
        defer { querySlots.release() }
        let queueSeconds = (ContinuousClock.now - queued).seconds
        metrics.queryQueue.record(ContinuousClock.now - queued)
        do {
            let result = try await runBlocking(name: "anchorkv-query", flag: flag) { [self] in
                // Once tokens went out (streaming), a retry would repeat them: report the error instead.
                var emitted = 0
                return try retryingConcurrentChange(attempts: 3, canRetry: { emitted == 0 }) {
                    try kb.query(p.question, k: p.k, documents: p.documents, maxTokens: p.maxTokens) { tok in
                        emitted += 1
                        onToken(tok)
                        return !flag.shouldStop
                    }
                }
            }
            if flag.why == "timeout" {
                metrics.queried(outcome: "timeout")
                throw APIError.timeout("the query ran past the \(Int(config.requestTimeout)) s request timeout")
            }
            metrics.queried(outcome: flag.why == nil ? "ok" : "stopped")
            metrics.querySeconds.record(.nanoseconds(Int64(result.totalSeconds * 1e9)))
            metrics.queryFirstToken.record(.nanoseconds(Int64(result.firstTokenSeconds * 1e9)))
            metrics.answerTokens.increment(by: Int64(result.answerTokens.count))
            return QueryOutcome(result: result, queueSeconds: queueSeconds, stopped: flag.why)
        } catch let e as APIError {
            throw e
        } catch {
            metrics.queried(outcome: "error")
            throw error
        }
    }

    // MARK: status

    public var uptimeSeconds: Double { (ContinuousClock.now - started).seconds }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Lets the service group stop the knowledge base's work on SIGTERM before the HTTP server
/// drains: it runs until graceful shutdown, then refuses new work and waits for jobs.
public struct AnchorServiceLifecycle: Service {
    let service: AnchorService
    public init(_ service: AnchorService) { self.service = service }

    public func run() async throws {
        try? await gracefulShutdown()
        service.logger.info("shutting down: refusing new work, stopping jobs at their next safe point")
        await service.beginShutdown()
    }
}
