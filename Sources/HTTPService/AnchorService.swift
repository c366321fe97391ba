import AnchorKVCore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The knowledge base behind the HTTP routes (the application core, shared by every request),
/// with what serving adds: lanes and queues, deadlines, jobs, metrics, shutdown.
///
/// Up to `maxConcurrentQueries` queries are answered at once, sharing each decode step through
/// one `QueryBatcher` (or, with batching off, each decoding alone on its own thread); ingests and imports go through one lane, one document at a time, beside them (the
/// core's encoder reuses one session). Model work runs on threads of its own (`runBlocking`),
/// never on the pool that serves HTTP.
public final class AnchorService: Sendable {
    public let core: KnowledgeService
    public let config: ServiceConfig
    public let metrics: ServiceMetrics
    public let jobs: JobRegistry
    let querySlots: AsyncSemaphore
    /// Continuous batching of the queries holding a slot (nil: batching is off).
    let batcher: QueryBatcher?
    let ingestLane: AsyncSemaphore
    /// One snapshot export or import at a time (each can hold a copy of the store on disk).
    let snapshotLane: AsyncSemaphore
    /// Snapshot uploads held at once, from their first byte until their file is removed.
    let uploadSlots: AsyncSemaphore
    let started = ContinuousClock.now
    /// Wall-clock start (what OpenAI model objects call "created").
    let startedAt = Date()
    private let stopping = Atomic<Bool>(false)
    let logger: Logger

    public init(core: KnowledgeService, config: ServiceConfig, metrics: ServiceMetrics = ServiceMetrics(), logger: Logger? = nil) throws {
        try config.validate()
        self.core = core
        self.config = config
        self.metrics = metrics
        self.logger = logger ?? Logger(label: "anchorkv")
        jobs = JobRegistry(keep: config.keptJobs)
        querySlots = AsyncSemaphore(permits: config.maxConcurrentQueries, maxWaiters: config.maxQueuedRequests)
        batcher = config.batching ? QueryBatcher(service: core) { [metrics] n in metrics.decodeBatch.record(Double(n)) } : nil
        ingestLane = AsyncSemaphore(permits: 1, maxWaiters: config.maxQueuedRequests)
        snapshotLane = AsyncSemaphore(permits: 1, maxWaiters: 4)
        uploadSlots = AsyncSemaphore(permits: config.maxConcurrentUploads, maxWaiters: 0)
        // A store holding this ratio with another adapter is refused now, not at the first
        // ingest; the registration itself goes into the first document's batch (a server that
        // starts and stores nothing leaves no registration behind to block another adapter).
        try core.checkAdapter()
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

    /// Ingests documents in order, one atomic write each, through the ingest lane. Documents not
    /// started when the request's deadline passes, it is cancelled or the service shuts down are
    /// `not_attempted`.
    public func ingest(_ docs: [IngestDocument], deadline: ContinuousClock.Instant, progress: (@Sendable (Int, String) -> Void)? = nil,
                       stop: StopFlag? = nil) async throws -> IngestReport {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await acquire(ingestLane, until: deadline, what: "the ingest lane (one ingest at a time)")
        defer { ingestLane.release() }
        let flag = stop ?? StopFlag(deadline: deadline)
        let watched = StopFlag(deadline: deadline) { [self] in
            isShuttingDown ? "shutdown" : flag.shouldStop ? (flag.why ?? "cancelled") : nil
        }
        return try await runBlocking(name: "anchorkv-ingest", flag: watched) { [self] in
            let report = core.ingest(docs, stop: watched) { done, item in
                guard let item else { progress?(done, docs[done].id); return }
                metrics.ingested(status: item.status.rawValue, tokens: item.document?.tokens ?? 0, seconds: item.seconds)
                if let e = item.error, APIError.from(e).status.code >= 500 { logger.error("ingest \(item.id): \(e)") }
            }
            progress?(docs.count, "")
            return report
        }
    }

    public func document(_ id: String, windows: Bool = false) async throws -> DocumentInfo {
        try await runBlocking(name: "anchorkv-read") { [core] in try core.document(id, windows: windows) }
    }

    public func delete(_ id: String) async throws {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        try await runBlocking(name: "anchorkv-delete") { [core] in try core.delete(id) }
    }

    // MARK: queries

    /// Answers a question with a decode slot; `onToken` gets each answer token as it is made.
    /// Throws 404 for unknown documents, 503 when the queue is full, 504 past the deadline.
    public func query(_ q: KnowledgeService.Question, deadline: ContinuousClock.Instant, flag: StopFlag,
                      onToken: @escaping @Sendable (Int32) -> Void = { _ in }) async throws -> QueryOutcome {
        guard !isShuttingDown else { throw APIError.shuttingDown }
        let queued = ContinuousClock.now
        try await acquire(querySlots, until: deadline, what: "a query slot")
        defer { querySlots.release() }
        let queueSeconds = (ContinuousClock.now - queued).seconds
        metrics.queryQueue.record(ContinuousClock.now - queued)
        do {
            let answer = try await runBlocking(name: "anchorkv-query", flag: flag) { [core, batcher] in
                let keepGoing: @Sendable (Int32) -> Bool = { tok in
                    onToken(tok)
                    return !flag.shouldStop
                }
                if let batcher { return try batcher.query(q, onToken: keepGoing) }
                return try core.query(q, onToken: keepGoing)
            }
            if flag.why == "timeout" {
                metrics.queried(outcome: "timeout")
                throw APIError.timeout("the query ran past the \(Int(config.requestTimeout)) s request timeout")
            }
            metrics.queried(outcome: flag.why == nil ? "ok" : "stopped")
            metrics.querySeconds.record(.nanoseconds(Int64(answer.timings.totalS * 1e9)))
            metrics.queryFirstToken.record(.nanoseconds(Int64(answer.timings.firstTokenS * 1e9)))
            metrics.answerTokens.increment(by: Int64(answer.answerTokens))
            return QueryOutcome(answer: answer, queueSeconds: queueSeconds, stopped: flag.why)
        } catch let e as APIError {
            throw e
        } catch let e as CoreError where e.kind == .notFound || e.kind == .invalidInput {
            metrics.queried(outcome: "rejected")
            throw e
        } catch {
            metrics.queried(outcome: "error")
            throw error
        }
    }

    public struct QueryOutcome: Sendable {
        public var answer: Answer
        public var queueSeconds: Double
        public var stopped: String?
    }

    /// Stops the shared decode thread after the server drained, before the process exits
    /// (see `QueryBatcher.shutdown`).
    public func stopDecoding() { batcher?.shutdown() }

    // MARK: status

    public var uptimeSeconds: Double { (ContinuousClock.now - started).seconds }
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
