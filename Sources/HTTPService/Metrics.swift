import Foundation
import Hummingbird
import AnchorKVCore
import Prometheus

/// The service's Prometheus metrics (GET /metrics, text exposition format 0.0.4). One registry
/// per service instance, so tests do not share counters.
public final class ServiceMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    static let latencyBuckets: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
        .map { Duration.nanoseconds(Int64($0 * 1e9)) }

    let inFlight: Gauge
    let ingestSeconds: DurationHistogram
    let ingestTokens: Counter
    let querySeconds: DurationHistogram
    let queryFirstToken: DurationHistogram
    let queryQueue: DurationHistogram
    let answerTokens: Counter
    let decodeBatch: ValueHistogram
    let storeDocuments: Gauge
    let storeTokens: Gauge
    let storeKVBytes: Gauge
    let storeBytesPerToken: Gauge
    let storeDiskBytes: Gauge
    let storeNotReplicated: Gauge
    let storeOutbox: Gauge

    static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        inFlight = registry.makeGauge(descriptor: Self.name("anchorkv_http_requests_in_flight", "HTTP requests being handled"))
        ingestSeconds = registry.makeDurationHistogram(descriptor: Self.name("anchorkv_ingest_document_seconds", "Time to compress and store one document (added or replaced)"), buckets: Self.latencyBuckets)
        ingestTokens = registry.makeCounter(descriptor: Self.name("anchorkv_ingest_tokens_total", "Encoder tokens of documents compressed and stored"))
        querySeconds = registry.makeDurationHistogram(descriptor: Self.name("anchorkv_query_seconds", "Query time from slot to last answer token (retrieve, load, decode)"), buckets: Self.latencyBuckets)
        queryFirstToken = registry.makeDurationHistogram(descriptor: Self.name("anchorkv_query_first_token_seconds", "Query time from slot to the first answer token"), buckets: Self.latencyBuckets)
        queryQueue = registry.makeDurationHistogram(descriptor: Self.name("anchorkv_query_queue_seconds", "Time a query waited for a decode slot"), buckets: Self.latencyBuckets)
        decodeBatch = registry.makeValueHistogram(descriptor: Self.name("anchorkv_decode_batch_size", "Sequences advanced together per decode step (continuous batching)"),
                                                  buckets: [1, 2, 4, 8, 16, 32, 64])
        answerTokens = registry.makeCounter(descriptor: Self.name("anchorkv_answer_tokens_total", "Answer tokens generated"))
        storeDocuments = registry.makeGauge(descriptor: Self.name("anchorkv_store_documents", "Documents in the store"))
        storeTokens = registry.makeGauge(descriptor: Self.name("anchorkv_store_tokens", "Encoder tokens of the stored documents"))
        storeKVBytes = registry.makeGauge(descriptor: Self.name("anchorkv_store_kv_bytes", "Bytes of stored anchor KV records"))
        storeBytesPerToken = registry.makeGauge(descriptor: Self.name("anchorkv_store_bytes_per_token", "Stored KV bytes per source token"))
        storeDiskBytes = registry.makeGauge(descriptor: Self.name("anchorkv_store_disk_bytes", "Bytes of the store folder on disk (RocksDB files)"))
        storeNotReplicated = registry.makeGauge(descriptor: Self.name("anchorkv_store_writes_not_replicated", "Cluster store: document writes since start that reached fewer replicas than required (not acknowledged)"))
        storeOutbox = registry.makeGauge(descriptor: Self.name("anchorkv_store_outbox_documents", "Cluster store: documents in the outbox, waiting to be written again"))
    }

    func request(method: String, route: String, status: Int, seconds: Duration) {
        registry.makeCounter(descriptor: Self.name("anchorkv_http_requests_total", "HTTP requests by method, route and status"), labels: [("method", method), ("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: Self.name("anchorkv_http_request_duration_seconds", "Time to the response head by method and route"), labels: [("method", method), ("route", route)],
                                       buckets: Self.latencyBuckets).record(seconds)
    }

    func ingested(status: String, tokens: Int, seconds: Double) {
        registry.makeCounter(descriptor: Self.name("anchorkv_ingest_documents_total", "Documents by ingest outcome"), labels: [("status", status)]).increment()
        if status == "added" || status == "replaced" {
            ingestTokens.increment(by: Int64(tokens))
            ingestSeconds.record(.nanoseconds(Int64(seconds * 1e9)))
        }
    }

    func queried(outcome: String) {
        registry.makeCounter(descriptor: Self.name("anchorkv_queries_total", "Queries by outcome"), labels: [("outcome", outcome)]).increment()
    }

    /// Store gauges, refreshed when /metrics is scraped.
    func refreshStore(_ s: StoreStats) {
        storeDocuments.set(Double(s.documents))
        storeTokens.set(Double(s.tokens))
        storeKVBytes.set(Double(s.kvBytes))
        storeBytesPerToken.set(s.bytesPerToken)
        storeDiskBytes.set(Double(s.diskBytes))
        storeNotReplicated.set(Double(s.writesNotReplicated))
        storeOutbox.set(Double(s.outboxDocuments))
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// Counts requests and their latency (to the response head) by method, route pattern and status.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        metrics.inFlight.increment()
        defer { metrics.inFlight.decrement() }
        var status = 500
        defer {
            metrics.request(method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: status,
                            seconds: ContinuousClock.now - start)
        }
        do {
            let response = try await next(request, context)
            status = response.status.code
            return response
        } catch {
            status = APIError.from(error).status.code
            throw error
        }
    }
}
