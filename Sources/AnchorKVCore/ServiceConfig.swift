import Foundation

/// Settings of `anchorkv serve` (config/anchorkv.json "serve", the environment, flags).
public struct ServiceConfig: Sendable, Equatable {
    /// Address to bind. Loopback by default; any other address needs `apiToken`.
    public var host = "127.0.0.1"
    public var port = 8080
    /// Bearer token required on every endpoint but /health (nil: no auth, loopback only).
    public var apiToken: String?
    /// Largest JSON request body (ingest, query).
    public var maxBodyBytes = 4 << 20
    /// Largest snapshot upload (POST /v1/snapshots/import).
    public var maxSnapshotBytes = 4 << 30
    /// Snapshot uploads received or waiting to be imported at once (each holds a temporary file
    /// of up to `maxSnapshotBytes`); past it an upload is refused with 503 before anything is written.
    public var maxConcurrentUploads = 2
    /// An upload that takes longer than this from arrival is refused with 408 (its file removed).
    public var uploadTimeout: Double = 3600
    /// An upload that sends no byte for this long is refused with 408 (its file removed).
    public var uploadIdleTimeout: Double = 60
    /// Queries (and other short requests): from arrival, queueing included.
    public var requestTimeout: Double = 120
    /// Ingest requests: documents not started before this are reported as not attempted.
    public var ingestTimeout: Double = 900
    /// Queries decoding at once; more wait in the queue. With batching they share each decode
    /// step, so this is the batch size (measured best at 8 on 2 cores: docs/benchmarks.md).
    public var maxConcurrentQueries = 8
    /// Continuous batching: the queries in flight share each decode step (one pass over the
    /// weights for all of them). Off: each query decodes alone on its own thread.
    public var batching = true
    /// Requests waiting for a query slot or the ingest lane before 503s are returned.
    public var maxQueuedRequests = 64
    public var maxDocumentsPerRequest = 256
    public var defaultK = 4
    public var maxK = 32
    /// Answer length when a query names none (config sac.max_answer_tokens), and the cap.
    public var defaultMaxTokens = 64
    public var maxAnswerTokens = 512
    /// SIGTERM: how long in-flight work may take to finish before it is cancelled.
    public var shutdownGrace: Double = 30
    /// Keep-alive connections idle this long are closed.
    public var idleTimeout: Double = 75
    /// Finished jobs kept for GET /v1/jobs/{id}.
    public var keptJobs = 100
    /// Where snapshot exports and uploads are written before they are streamed or imported
    /// (empty: the system's temporary folder). Needs room for a copy of the store.
    public var tmpDir = ""

    public init() {}

    /// The smallest token accepted for a non-loopback bind.
    public static let minimumTokenLength = 16

    /// Loopback names and addresses: 127.0.0.0/8, ::1, localhost.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Refuses settings the service must not start with.
    public func validate() throws {
        func bad(_ s: String) -> ConfigError { ConfigError(message: s) }
        guard (0...65535).contains(port) else { throw bad("serve.port must be 0...65535 (0 picks a free port), not \(port)") }
        guard !host.isEmpty else { throw bad("serve.host is empty") }
        if let t = apiToken, t.count < Self.minimumTokenLength {
            throw bad("the API token is \(t.count) characters; use at least \(Self.minimumTokenLength) (e.g. openssl rand -hex 24)")
        }
        if !Self.isLoopback(host) && apiToken == nil {
            throw bad("refusing to listen on \(host) (not a loopback address) without an API token: set ANCHORKV_API_TOKEN, serve.api_token_file or --api-token-file, or bind 127.0.0.1")
        }
        for (name, v) in [("max_body_bytes", maxBodyBytes), ("max_snapshot_bytes", maxSnapshotBytes),
                          ("max_concurrent_uploads", maxConcurrentUploads), ("max_concurrent_queries", maxConcurrentQueries),
                          ("max_documents_per_request", maxDocumentsPerRequest), ("default_k", defaultK), ("max_k", maxK),
                          ("max_answer_tokens", maxAnswerTokens), ("default_max_tokens", defaultMaxTokens)] where v <= 0 {
            throw bad("serve.\(name) must be positive, not \(v)")
        }
        guard maxQueuedRequests >= 0 else { throw bad("serve.max_queued_requests must be >= 0") }
        for (name, v) in [("request_timeout_s", requestTimeout), ("ingest_timeout_s", ingestTimeout), ("shutdown_grace_s", shutdownGrace),
                          ("idle_timeout_s", idleTimeout), ("upload_timeout_s", uploadTimeout), ("upload_idle_timeout_s", uploadIdleTimeout)] where !(v > 0) {
            throw bad("serve.\(name) must be positive, not \(v)")
        }
        guard defaultK <= maxK else { throw bad("serve.default_k (\(defaultK)) is above serve.max_k (\(maxK))") }
    }

    /// Applies a "serve" object; relative paths resolve against `root`.
    public mutating func apply(json: [String: Any], root: URL) throws {
        var section = ConfigSection(json, path: "serve")
        try apply(&section, root: root)
    }

    /// Applies the config file's "serve" object, read strictly as every section of it is.
    mutating func apply(_ s: inout ConfigSection, root: URL) throws {
        // Ranges are validate()'s; here only the JSON types (ConfigSection's checks).
        func int(_ k: String) throws -> Int? { try s.int(k, min: Int.min) }
        func double(_ k: String) throws -> Double? { try s.double(k, min: -.infinity) }
        if let h = try s.string("host") { host = h }
        if let v = try int("port") { port = v }
        if let v = try int("max_body_bytes") { maxBodyBytes = v }
        if let v = try int("max_snapshot_bytes") { maxSnapshotBytes = v }
        if let v = try int("max_concurrent_uploads") { maxConcurrentUploads = v }
        if let v = try double("upload_timeout_s") { uploadTimeout = v }
        if let v = try double("upload_idle_timeout_s") { uploadIdleTimeout = v }
        if let v = try double("request_timeout_s") { requestTimeout = v }
        if let v = try double("ingest_timeout_s") { ingestTimeout = v }
        if let v = try int("max_concurrent_queries") { maxConcurrentQueries = v }
        if let v = try int("max_queued_requests") { maxQueuedRequests = v }
        if let v = try s.bool("batching") { batching = v }
        if let v = try int("max_documents_per_request") { maxDocumentsPerRequest = v }
        if let v = try int("default_k") { defaultK = v }
        if let v = try int("max_k") { maxK = v }
        if let v = try int("max_answer_tokens") { maxAnswerTokens = v }
        if let v = try double("shutdown_grace_s") { shutdownGrace = v }
        if let v = try double("idle_timeout_s") { idleTimeout = v }
        if let v = try int("kept_jobs") { keptJobs = v }
        if let t = try s.string("tmp_dir") { tmpDir = t.isEmpty || t.hasPrefix("/") ? t : root.appendingPathComponent(t).path }
        if let f = try s.string("api_token_file"), !f.isEmpty {
            apiToken = try Self.readToken(file: f.hasPrefix("/") ? f : root.appendingPathComponent(f).path)
        }
        try s.rejectUnknown()
    }

    /// `validate` reporting a CoreError (invalid_config).
    public func check() throws(CoreError) { do { try validate() } catch { throw CoreError.from(error) } }

    /// `readToken` reporting a CoreError.
    public static func token(file: String) throws(CoreError) -> String {
        do { return try readToken(file: file) } catch { throw CoreError.from(error) }
    }

    /// Reads a token file (first line, surrounding whitespace removed).
    public static func readToken(file: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(message: "cannot read the API token file \(file)")
        }
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !token.isEmpty else { throw ConfigError(message: "the API token file \(file) is empty") }
        return token
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
