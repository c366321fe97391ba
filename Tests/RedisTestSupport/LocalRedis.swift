import Foundation
import XCTest
import RedisCluster

/// A redis-server of its own on a free 127.0.0.1 port (Debian's redis-server, installed by
/// tools/setup.sh), its files in a temporary folder; stopped when the object goes away.
/// Started with posix_spawn and reaped with waitpid, so a stop is a signal and a wait, nothing
/// else in between.
public final class LocalRedis {
    public let port: Int
    public let dir: URL
    public private(set) var pid: pid_t = 0
    /// Required of clients (requirepass) and used by replicas towards their master (masterauth).
    public let password: String?

    /// `cluster`: cluster mode with a short node timeout, so failovers finish within a test.
    public init(cluster: Bool = false, nodeTimeoutMs: Int = 2000, password: String? = nil, extra: [String] = []) throws {
        self.password = password
        let binary = try Self.binary()
        port = try Self.freePort(cluster: cluster)
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-redis-\(port)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir.path,
                    "--daemonize", "no", "--logfile", dir.appendingPathComponent("redis.log").path]
        if cluster {
            args += ["--cluster-enabled", "yes", "--cluster-config-file", dir.appendingPathComponent("nodes.conf").path,
                     "--cluster-node-timeout", String(nodeTimeoutMs),
                     // Replicas sync at once (the default waits 5 s for more replicas to share a transfer).
                     "--repl-diskless-sync-delay", "0",
                     // Replicas go on serving reads while the cluster marks a master failed (docs/scale-out.md).
                     "--cluster-allow-reads-when-down", "yes",
                     // CLUSTER SLOTS lists a replica only once its replication offset is known, and the
                     // offset moves with the master's pings (every 10 s by default): 1 s forms a
                     // cluster in about 2 s instead of about 10.
                     "--repl-ping-replica-period", "1"]
        }
        if let password { args += ["--requirepass", password, "--masterauth", password] }
        try start(binary, args + extra)
    }

    deinit {
        stop(signal: SIGKILL)
        try? FileManager.default.removeItem(at: dir)
    }

    public var isRunning: Bool { pid != 0 }

    /// Stops the server (SIGTERM lets it shut down, SIGKILL is a crash) and reaps it.
    public func stop(signal: Int32 = SIGTERM) {
        guard pid != 0 else { return }
        kill(pid, signal)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        pid = 0
    }

    /// The last `lines` lines of the server's log (for a failure's message).
    public func logTail(lines: Int = 15) -> String {
        guard let text = try? String(contentsOf: dir.appendingPathComponent("redis.log"), encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Connects once the server accepts connections (it starts in a few milliseconds).
    public func connect() async throws -> RedisConnection {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            do {
                let c = try await RedisConnection.connect(host: "127.0.0.1", port: port, timeout: .seconds(1))
                if let password { try await c.run(["AUTH", password]) }
                if try await c.run(["PING"]) == .simpleString("PONG") { return c }
            } catch where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    private func start(_ binary: String, _ args: [String]) throws {
        let argv = ([binary] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // The child gets an empty signal mask and default handlers: it inherits the spawning
        // thread's, and the test runner's threads block SIGTERM (redis then never stopped).
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let rc = posix_spawn(&pid, binary, &actions, &attr, argv, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    }

    /// The redis-server binary; a skip where it is missing, a failure where CI requires it.
    public static func binary() throws -> String {
        if let b = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return b
        }
        if ProcessInfo.processInfo.environment["ANCHORKV_REQUIRE_REDIS"] == "1" {
            throw POSIXError(.ENOENT, userInfo: [NSLocalizedDescriptionKey: "redis-server is missing and ANCHORKV_REQUIRE_REDIS=1"])
        }
        throw XCTSkip("redis-server is not installed (tools/setup.sh installs it)")
    }

    /// A free port; in cluster mode also port + 10000 (the cluster bus) must be free.
    public static func freePort(cluster: Bool) throws -> Int {
        for _ in 0..<100 {
            guard let p = bindable(0) else { break }
            if !cluster || (p + 10000 <= 65535 && bindable(p + 10000) != nil) { return p }
        }
        throw XCTSkip("cannot find a free port")
    }

    private static func bindable(_ port: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: addr.sin_port)) : nil
    }
}

/// Runs blocking work (a cluster store's synchronous calls wait on its client) on a thread of
/// its own, as the HTTP service does, never on a Swift concurrency thread.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        let t = Thread { c.resume(with: Result { try body() }) }
        t.stackSize = 8 << 20
        t.start()
    }
}
