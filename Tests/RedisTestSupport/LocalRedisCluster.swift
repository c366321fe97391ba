import Foundation
import XCTest
import RedisCluster

/// A Redis Cluster of its own on 127.0.0.1: `masters` masters with `replicasPerMaster` replicas
/// each, slots split evenly, built with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE (no redis-cli);
/// every node killed when the object goes away.
public final class LocalRedisCluster {
    public let nodes: [LocalRedis]
    public private(set) var ids: [String] = []
    public let masters: Int

    public init(masters: Int = 3, replicasPerMaster: Int = 1, nodeTimeoutMs: Int = 2000, password: String? = nil) async throws {
        self.masters = masters
        nodes = try (0..<(masters * (1 + replicasPerMaster))).map { _ in
            try LocalRedis(cluster: true, nodeTimeoutMs: nodeTimeoutMs, password: password)
        }
        let links = SetupLinks(nodes)
        do {
            try await form(links)
        } catch {
            // Whatever went wrong, the nodes' own logs say more than the client's error.
            await links.close()
            throw SetupFailed(error: error, logs: nodes.map { $0.logTail() })
        }
        await links.close()
    }

    private func form(_ links: SetupLinks) async throws {
        let count = nodes.count
        for i in 0..<count { ids.append(try await Self.string(links.run(i, ["CLUSTER", "MYID"]))) }
        for m in 0..<masters {
            let first = m * HashSlot.count / masters, last = (m + 1) * HashSlot.count / masters - 1
            try await links.run(m, ["CLUSTER", "ADDSLOTSRANGE", String(first), String(last)])
        }
        for n in nodes.dropFirst() { try await links.run(0, ["CLUSTER", "MEET", "127.0.0.1", String(n.port)]) }
        var met = ContinuousClock.now
        try await Self.until("every node knows all \(count)") {
            for i in 0..<count {
                let text = try await Self.string(links.run(i, ["CLUSTER", "NODES"]))
                let lines = text.split(separator: "\n")
                if lines.count != count || lines.contains(where: { $0.contains("handshake") || $0.contains("noaddr") }) {
                    // Redis drops a handshake that did not finish within the node timeout (a loaded
                    // machine): every few seconds, node 0 meets the nodes it still lacks again.
                    if ContinuousClock.now - met > .seconds(3) {
                        met = .now
                        let known = try await Self.string(links.run(0, ["CLUSTER", "NODES"]))
                        for (k, n) in nodes.enumerated().dropFirst() where !known.contains(ids[k]) {
                            _ = try? await links.run(0, ["CLUSTER", "MEET", "127.0.0.1", String(n.port)])
                        }
                    }
                    return false
                }
            }
            return true
        }
        for r in masters..<count {
            let master = ids[(r - masters) % masters]
            try await Self.until("node \(r) replicates \(master)") {
                (try? await links.run(r, ["CLUSTER", "REPLICATE", master])) != nil
            }
        }
        try await waitHealthy(links)
        try await Self.until("CLUSTER SLOTS lists every replica") {
            for i in 0..<count {
                let t = try ClusterTopology(clusterSlots: try await links.run(i, ["CLUSTER", "SLOTS"]), asked: RedisNodeAddress(host: "127.0.0.1", port: 1))
                if t.nodes.count != count || !t.coversAllSlots { return false }
            }
            return true
        }
    }

    deinit { for n in nodes { n.stop(signal: SIGKILL) } }

    public var seeds: [RedisNodeAddress] { nodes.filter(\.isRunning).map { RedisNodeAddress(host: "127.0.0.1", port: $0.port) } }

    public func index(of address: RedisNodeAddress) -> Int? { nodes.firstIndex { $0.port == address.port } }

    /// Every running node says cluster_state:ok and every running replica's link is up.
    public func waitHealthy(timeout: Duration = .seconds(20)) async throws {
        let links = SetupLinks(nodes)
        do { try await waitHealthy(links, timeout: timeout) } catch {
            await links.close()
            throw error
        }
        await links.close()
    }

    private func waitHealthy(_ links: SetupLinks, timeout: Duration = .seconds(20)) async throws {
        try await Self.until("the cluster is healthy", timeout: timeout) {
            for i in nodes.indices where nodes[i].isRunning {
                let info = try await Self.string(links.run(i, ["CLUSTER", "INFO"]))
                guard info.contains("cluster_state:ok") else { return false }
                let replication = try await Self.string(links.run(i, ["INFO", "replication"]))
                if replication.contains("role:slave"), !replication.contains("master_link_status:up") { return false }
            }
            return true
        }
    }

    public static func string(_ v: RESPValue) throws -> String {
        switch v {
        case .bulkString(let b?): return String(decoding: b, as: UTF8.self)
        case .simpleString(let s): return s
        default: throw RedisError.protocolError("expected a string, got \(v)")
        }
    }

    public static func until(_ what: String, timeout: Duration = .seconds(20), _ check: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await check() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RedisError.timedOut("waiting until \(what)")
    }
}

/// One setup connection per node, opened again when the node dropped it: forming a cluster
/// must not fail on one reset link when the node itself is still there. Used by one task at a time.
final class SetupLinks {
    private let nodes: [LocalRedis]
    private var open: [Int: RedisConnection] = [:]

    init(_ nodes: [LocalRedis]) { self.nodes = nodes }

    @discardableResult
    func run(_ i: Int, _ command: [String]) async throws -> RESPValue {
        var attempt = 0
        while true {
            do {
                if open[i]?.isActive != true { open[i] = try await nodes[i].connect() }
                return try await open[i]!.run(command)
            } catch {
                attempt += 1
                // An error reply is the node's answer, not a lost link: it is not asked again.
                if case .reply? = error as? RedisError { throw error }
                if attempt == 3 { throw error }
                if let c = open.removeValue(forKey: i) { await c.close() }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    func close() async {
        for c in open.values { await c.close() }
        open = [:]
    }
}

/// The cluster could not be formed: the error, and the end of every node's log.
public struct SetupFailed: Error, CustomStringConvertible {
    public let error: any Error
    public let logs: [String]
    public var description: String {
        "forming the local Redis Cluster failed: \(error)\n" + logs.enumerated().map { "--- node \($0.offset) log ---\n\($0.element)" }.joined(separator: "\n")
    }
}
