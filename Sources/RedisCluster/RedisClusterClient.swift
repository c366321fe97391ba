/// A Redis Cluster client: commands for one hash slot go to the node serving it, over pooled
/// pipelined connections, and follow the cluster when it changes under them.
///
/// - Topology from CLUSTER SLOTS, asked of any known node; refreshed (one refresh at a time) when
///   a node answers MOVED, when a node cannot be reached, and on CLUSTERDOWN.
/// - MOVED: the slot is remapped at once and the request sent again; ASK: sent again to the
///   importing node behind ASKING, the mapping left as it was.
/// - TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY, a lost or silent node: retried with
///   exponential backoff until `Options.retryFor` has passed (a failover takes about the
///   cluster's node timeout and an election), then the last error is thrown.
/// - Reads while a master cannot be reached go to one of its replicas (READONLY), so they do not
///   wait for the failover; writes do (they need the new master).
///
/// A request may reach the cluster more than once (a reply lost with its node is retried), so
/// what is sent must be safe to repeat: AnchorKV writes whole values under fresh keys and flips
/// a manifest in MULTI/EXEC, which is.
public actor RedisClusterClient {
    public struct Options: Sendable {
        public var username: String?
        public var password: String?
        public var connectTimeout: Duration = .seconds(2)
        public var commandTimeout: Duration = .seconds(5)
        /// How long a request keeps being retried through failovers and resharding.
        public var retryFor: Duration = .seconds(10)
        public var maxRedirects = 16
        /// Reads marked read-only go to a replica of their slot (READONLY connections) when one is known.
        public var readFromReplicas = false
        /// Reads marked read-only go to a replica while their slot's master cannot be reached
        /// (they may then see a slightly older state, never a torn one: a replica applies the
        /// master's stream in order).
        public var readFromReplicasWhenMasterIsDown = true
        /// How long a node that failed a request counts as down for routing reads.
        public var downFor: Duration = .seconds(5)
        /// Connections per node, used in turn (each one pipelines).
        public var connectionsPerNode = 2
        public var limits = RESPDecoder.Limits()
        public init() {}
    }

    /// How often the client had to follow the cluster (for metrics and tests).
    public struct Counters: Sendable, Equatable {
        public var moved = 0, asked = 0, retried = 0, refreshes = 0, connects = 0
        /// Reads sent to a replica because their master could not be reached.
        public var replicaFallbacks = 0
    }

    public let seeds: [RedisNodeAddress]
    public let options: Options
    public private(set) var counters = Counters()
    private var topology: ClusterTopology?
    private var refreshing: Task<ClusterTopology, any Error>?
    private var pool: [RedisNodeAddress: [Task<RedisConnection, any Error>?]] = [:]
    private var turn: [RedisNodeAddress: Int] = [:]
    /// Nodes that last failed a request, and when.
    private var down: [RedisNodeAddress: ContinuousClock.Instant] = [:]

    public init(seeds: [RedisNodeAddress], options: Options = Options()) {
        precondition(!seeds.isEmpty, "a cluster needs at least one seed node")
        self.seeds = seeds
        self.options = options
    }

    /// The slot map, fetched when there is none yet.
    public func currentTopology() async throws -> ClusterTopology {
        if let topology { return topology }
        return try await refreshTopology()
    }

    /// Fetches CLUSTER SLOTS from the first node that answers (known nodes, then the seeds).
    @discardableResult
    public func refreshTopology() async throws -> ClusterTopology {
        if let refreshing { return try await refreshing.value }
        let candidates = (topology?.nodes.shuffled() ?? []) + seeds.filter { !(topology?.nodes.contains($0) ?? false) }
        let task = Task { () throws -> ClusterTopology in
            var failures: [String] = []
            for node in candidates {
                do {
                    let c = try await self.connection(to: node)
                    let reply = try await c.run(["CLUSTER", "SLOTS"], timeout: self.options.commandTimeout)
                    let t = try ClusterTopology(clusterSlots: reply, asked: node)
                    if !t.ranges.isEmpty { return t }
                    failures.append("\(node): no slots assigned")
                } catch {
                    self.drop(node)
                    // Wrong or missing credentials do not get better by retrying.
                    if let auth = RedisConnection.authenticationFailure(error, node: "\(node)") { throw auth }
                    failures.append("\(node): \(error)")
                }
            }
            throw RedisError.connectionClosed("no cluster node answered CLUSTER SLOTS (\(failures.joined(separator: "; ")))")
        }
        refreshing = task
        defer { refreshing = nil }
        let t = try await task.value
        topology = t
        counters.refreshes += 1
        return t
    }

    /// Sends `commands` (all for `slot`) as one pipeline to the node serving the slot; the
    /// replies in order. Error replies other than the cluster's redirections are values.
    public func pipeline(_ commands: [[[UInt8]]], slot: Int, readOnly: Bool = false) async throws -> [RESPValue] {
        try await send(Request(commands: commands, transaction: false), slot: slot, readOnly: readOnly)
    }

    public func pipeline(_ commands: [[String]], slot: Int, readOnly: Bool = false) async throws -> [RESPValue] {
        try await pipeline(commands.map { $0.map { Array($0.utf8) } }, slot: slot, readOnly: readOnly)
    }

    /// One command; an error reply is thrown.
    @discardableResult
    public func run(_ command: [[UInt8]], slot: Int, readOnly: Bool = false) async throws -> RESPValue {
        let r = try await pipeline([command], slot: slot, readOnly: readOnly)[0]
        if case .error(let m) = r { throw RedisError.reply(m) }
        return r
    }

    /// What a transaction did: EXEC's replies, and with `waitReplicas` the replicas WAIT counted.
    public struct TransactionResult: Sendable {
        public var replies: [RESPValue]
        public var replicasAcknowledged: Int?
    }

    /// MULTI, the commands, EXEC (and WAIT when `waitReplicas` is given), in one write to the
    /// slot's master: all of the commands take effect or none does. An aborted transaction
    /// (a command refused while queueing) throws.
    public func transaction(_ commands: [[[UInt8]]], slot: Int, waitReplicas: Int? = nil,
                            waitTimeout: Duration = .milliseconds(500)) async throws -> TransactionResult {
        var all = [[Array("MULTI".utf8)]] + commands + [[Array("EXEC".utf8)]]
        if let n = waitReplicas {
            let ms = waitTimeout.components.seconds * 1000 + waitTimeout.components.attoseconds / 1_000_000_000_000_000
            all.append(["WAIT", String(n), String(max(1, ms))].map { Array($0.utf8) })
        }
        let replies = try await send(Request(commands: all, transaction: true), slot: slot, readOnly: false)
        let execAt = commands.count + 1
        for r in replies[..<execAt] { if case .error(let m) = r { throw RedisError.reply(m) } }
        guard case .array(let results?) = replies[execAt] else {
            if case .error(let m) = replies[execAt] { throw RedisError.reply(m) }
            throw RedisError.protocolError("EXEC answered \(replies[execAt])")
        }
        var acknowledged: Int?
        if waitReplicas != nil {
            guard case .integer(let n) = replies[execAt + 1] else { throw RedisError.protocolError("WAIT answered \(replies[execAt + 1])") }
            acknowledged = Int(n)
        }
        return TransactionResult(replies: results, replicasAcknowledged: acknowledged)
    }

    /// One command on one node (administration: INFO, CONFIG GET, SCAN of a node's keys).
    public func run(_ command: [String], on node: RedisNodeAddress) async throws -> RESPValue {
        try await connection(to: node).run(command, timeout: options.commandTimeout)
    }

    /// Closes every pooled connection.
    public func close() async {
        let tasks = pool.values.flatMap { $0 }.compactMap { $0 }
        pool = [:]
        for t in tasks { if let c = try? await t.value { await c.close() } }
    }

    // MARK: routing

    struct Request {
        var commands: [[[UInt8]]]
        /// MULTI ... EXEC: ASKING goes once before MULTI (inside a transaction it would be queued).
        var transaction: Bool

        /// The commands as sent, and where their own replies are in what comes back.
        func wire(asking: Bool) -> (commands: [[[UInt8]]], replies: [Int]) {
            guard asking else { return (commands, Array(commands.indices)) }
            let askingCommand = [Array("ASKING".utf8)]
            if transaction { return ([askingCommand] + commands, Array(1...commands.count)) }
            return (commands.flatMap { [askingCommand, $0] }, commands.indices.map { 2 * $0 + 1 })
        }
    }

    private func send(_ request: Request, slot: Int, readOnly: Bool) async throws -> [RESPValue] {
        guard !request.commands.isEmpty else { return [] }
        let deadline = ContinuousClock.now + options.retryFor
        var askTarget: RedisNodeAddress?
        var redirects = 0, attempt = 0
        var lastError: any Error = RedisError.connectionClosed("no node serves slot \(slot)")
        while true {
            var node: RedisNodeAddress?
            if let askTarget { node = askTarget } else {
                do {
                    if let r = try await currentTopology().range(of: slot) { node = route(r, readOnly: readOnly) }
                } catch {
                    if case .authenticationFailed? = error as? RedisError { throw error }
                    lastError = error
                }
            }
            if let node {
                let replies: [RESPValue]
                do {
                    let (wire, own) = request.wire(asking: askTarget != nil)
                    let c = try await connection(to: node)
                    let raw = try await c.pipeline(wire, timeout: options.commandTimeout)
                    replies = own.map { raw[$0] }
                    down[node] = nil
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    if let auth = RedisConnection.authenticationFailure(error, node: "\(node)") { throw auth }
                    // The node is gone or silent: forget its connections and ask the others.
                    replies = []
                    lastError = error
                    down[node] = .now
                    drop(node)
                    _ = try? await refreshTopology()
                    // A read whose master just failed goes to a replica at once.
                    if readOnly, options.readFromReplicasWhenMasterIsDown, askTarget == nil,
                       let r = topology?.range(of: slot), r.master == node, r.replicas.contains(where: { !isDown($0) }) {
                        continue
                    }
                }
                askTarget = nil
                if !replies.isEmpty {
                    guard let redirect = replies.lazy.compactMap(Redirect.init).first else { return replies }
                    redirects += 1
                    guard redirects <= options.maxRedirects else {
                        throw RedisError.reply("more than \(options.maxRedirects) redirections for slot \(slot), the last \(redirect)")
                    }
                    switch redirect {
                    case .moved(let s, let to):
                        counters.moved += 1
                        topology?.move(slot: s, to: to)
                        Task { _ = try? await self.refreshTopology() }
                        continue
                    case .ask(let to):
                        counters.asked += 1
                        askTarget = to
                        continue
                    case .retry(let message, let refresh):
                        lastError = RedisError.reply(message)
                        if refresh { _ = try? await refreshTopology() }
                    }
                }
            } else {
                _ = try? await refreshTopology()
            }
            // Back off: 20 ms doubling to 500 ms, with jitter, until the deadline.
            attempt += 1
            counters.retried += 1
            let pause = Duration.milliseconds(min(500, 20 << min(attempt, 5))) * Double.random(in: 0.5...1.0)
            guard ContinuousClock.now + pause < deadline else {
                throw lastError
            }
            try await Task.sleep(for: pause)
        }
    }

    /// Where a request for a slot range goes: its master, or for a read a replica (when
    /// replica reads are on, or while the master counts as down and a replica does not).
    private func route(_ r: ClusterTopology.SlotRange, readOnly: Bool) -> RedisNodeAddress {
        guard readOnly, !r.replicas.isEmpty else { return r.master }
        if options.readFromReplicas { return r.replicas.randomElement()! }
        guard options.readFromReplicasWhenMasterIsDown, isDown(r.master) else { return r.master }
        let up = r.replicas.filter { !isDown($0) }
        guard let replica = up.randomElement() else { return r.master }
        counters.replicaFallbacks += 1
        return replica
    }

    private func isDown(_ node: RedisNodeAddress) -> Bool {
        guard let since = down[node] else { return false }
        if ContinuousClock.now - since < options.downFor { return true }
        down[node] = nil
        return false
    }

    /// The cluster telling a client to go elsewhere or come back later.
    enum Redirect: CustomStringConvertible {
        case moved(slot: Int, to: RedisNodeAddress)
        case ask(to: RedisNodeAddress)
        case retry(String, refreshTopology: Bool)

        init?(_ reply: RESPValue) {
            guard case .error(let m) = reply, let code = reply.errorCode else { return nil }
            let parts = m.split(separator: " ")
            switch code {
            case "MOVED", "ASK":
                guard parts.count >= 3, let slot = Int(parts[1]), let to = RedisNodeAddress(parts[2]) else { return nil }
                self = code == "MOVED" ? .moved(slot: slot, to: to) : .ask(to: to)
            case "TRYAGAIN", "LOADING", "MASTERDOWN", "BUSY": self = .retry(m, refreshTopology: false)
            case "CLUSTERDOWN", "READONLY": self = .retry(m, refreshTopology: true)
            default: return nil
            }
        }

        var description: String {
            switch self {
            case .moved(let s, let to): return "MOVED \(s) \(to)"
            case .ask(let to): return "ASK \(to)"
            case .retry(let m, _): return m
            }
        }
    }

    // MARK: connections

    /// A pooled connection to `node`, opened (with AUTH and READONLY as configured) when there
    /// is none or the last one broke.
    func connection(to node: RedisNodeAddress) async throws -> RedisConnection {
        var slots = pool[node] ?? Array(repeating: nil, count: max(1, options.connectionsPerNode))
        let i = (turn[node] ?? 0) % slots.count
        turn[node] = i + 1
        if let existing = slots[i] {
            if let c = try? await existing.value, c.isActive { return c }
            slots = pool[node] ?? slots
            if slots[i] != existing { return try await connection(to: node) }  // replaced meanwhile
        }
        let options = self.options
        let task = Task { () throws -> RedisConnection in
            let c = try await RedisConnection.connect(host: node.host, port: node.port, timeout: options.connectTimeout, limits: options.limits)
            do {
                if let password = options.password {
                    try await c.run(options.username.map { ["AUTH", $0, password] } ?? ["AUTH", password], timeout: options.commandTimeout)
                }
                // READONLY lets a replica serve reads of its master's slots; on a master it changes nothing.
                if options.readFromReplicas || options.readFromReplicasWhenMasterIsDown {
                    try await c.run(["READONLY"], timeout: options.commandTimeout)
                }
            } catch {
                await c.close()
                throw error
            }
            return c
        }
        slots[i] = task
        pool[node] = slots
        counters.connects += 1
        do {
            return try await task.value
        } catch {
            if pool[node]?[i] == task { pool[node]?[i] = nil }
            throw error
        }
    }

    /// Forgets a node's connections (they are closed as they fail or when the client closes).
    func drop(_ node: RedisNodeAddress) {
        guard let tasks = pool.removeValue(forKey: node) else { return }
        for t in tasks.compactMap({ $0 }) { Task { if let c = try? await t.value { await c.close() } } }
    }
}
