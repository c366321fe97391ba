import ArgumentParser
import Foundation
import AnchorKVCore
import HTTPService
import Hummingbird
import Logging
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the HTTP service: ingest, query, document KV, jobs, health and metrics (docs/http-api.md).",
        discussion: """
            Binds 127.0.0.1:8080 by default (config/anchorkv.json "serve"). Any other address needs an API token \
            (ANCHORKV_API_TOKEN, serve.api_token_file or --api-token-file); every endpoint but /health then needs \
            'Authorization: Bearer TOKEN'. Environment: ANCHORKV_HOST, ANCHORKV_PORT, ANCHORKV_API_TOKEN, \
            ANCHORKV_API_TOKEN_FILE (flags override them, they override the file). SIGTERM or SIGINT: new work is \
            refused, in-flight queries finish, ingests stop after their current document, jobs at their next safe \
            point, then the server drains its connections (at most serve.shutdown_grace_s, then in-flight work is \
            cancelled). Prints "listening on http://HOST:PORT" on stdout once it accepts connections.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var sac: SACOptions
    @Option(name: .long, help: "Address to bind (default: serve.host, 127.0.0.1).") var host: String?
    @Option(name: .long, help: "Port (default: serve.port, 8080; 0 picks a free one).") var port: Int?
    @Option(name: .long, help: "File whose first line is the API token (keeps it out of the process list).") var apiTokenFile: String?
    @Option(name: .long, help: "Largest JSON body in bytes (default: serve.max_body_bytes).") var maxBodyBytes: Int?
    @Option(name: .long, help: "Request timeout in seconds for queries (default: serve.request_timeout_s).") var requestTimeout: Double?
    @Option(name: .long, help: "Queries decoding at once: the decode batch (default: serve.max_concurrent_queries).") var maxConcurrentQueries: Int?
    @Flag(inversion: .prefixedNo, help: "Continuous batching: queries in flight share each decode step (default: serve.batching, on).") var batching: Bool?
    @Option(name: .long, help: "Element type for a new store: f16 (default), bf16 or int8.") var dtype = "f16"
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"

    /// The service settings: flags > environment > config file > defaults (AppConfig layers the rest).
    func serviceConfig(_ cfg: AppConfig) throws -> ServiceConfig {
        var sc = cfg.serve
        sc.defaultMaxTokens = cfg.answerMaxTokens
        if let host { sc.host = host }
        if let port { sc.port = port }
        if let apiTokenFile { sc.apiToken = try reporting { try ServiceConfig.token(file: apiTokenFile) } }
        if let maxBodyBytes { sc.maxBodyBytes = maxBodyBytes }
        if let requestTimeout { sc.requestTimeout = requestTimeout }
        if let maxConcurrentQueries { sc.maxConcurrentQueries = maxConcurrentQueries }
        if let batching { sc.batching = batching }
        try reporting { try sc.check() }
        return sc
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level must be trace, debug, info, notice, warning or error") }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "anchorkv")
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let sc = try serviceConfig(cfg)
        let core = try openService(modelOptions, storeOptions, sac, create: true, dtype: dtype)
        let service = try reporting { try AnchorService(core: core, config: sc, logger: logger) }
        logger.info("model \(core.modelName), store \(core.storePath), ratio \(core.ratio), adapter \(core.adapterFingerprint)")

        let app = AnchorKVServer.application(service: service, logger: logger) { channel in
            let port = channel.localAddress?.port ?? sc.port
            let shown = sc.host.contains(":") ? "[\(sc.host)]" : sc.host
            FileHandle.standardOutput.write(Data("listening on http://\(shown):\(port)\n".utf8))
            logger.info("listening on http://\(shown):\(port)\(sc.apiToken == nil ? " (no API token: loopback only)" : " (bearer token required)")")
        }
        var groupConfig = ServiceGroupConfiguration(
            services: [
                .init(service: app),
                // Shut down first (services stop in reverse order): refuse new work and stop
                // jobs before the server drains the requests still in flight.
                .init(service: AnchorServiceLifecycle(service), successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfig.maximumGracefulShutdownDuration = .nanoseconds(Int64(sc.shutdownGrace * 1e9))
        groupConfig.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: groupConfig).run()
        service.stopDecoding()
        logger.info("stopped")
    }
}
