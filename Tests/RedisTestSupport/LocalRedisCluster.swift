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
        var connections: [RedisConnection] = []
        for n in nodes { connections.append(try await n.connect()) }
        for c in connections { ids.append(try await Self.string(c.run(["CLUSTER", "MYID"]))) }
        for m in 0..<masters {
            let first = m * HashSlot.count / masters, last = (m + 1) * HashSlot.count / masters - 1
            try await connections[m].run(["CLUSTER", "ADDSLOTSRANGE", String(first), String(last)])
        }
        for n in nodes.dropFirst() { try await connections[0].run(["CLUSTER", "MEET", "127.0.0.1", String(n.port)]) }
        try await Self.until("every node knows all \(nodes.count)") {
            for c in connections {
                let text = try await Self.string(c.run(["CLUSTER", "NODES"]))
                let lines = text.split(separator: "\n")
                if lines.count != self.nodes.count || lines.contains(where: { $0.contains("handshake") || $0.contains("noaddr") }) { return false }
            }
            return true
        }
        for r in masters..<nodes.count {
            let master = ids[(r - masters) % masters]
            try await Self.until("node \(r) replicates \(master)") {
                (try? await connections[r].run(["CLUSTER", "REPLICATE", master])) != nil
            }
        }
        try await waitHealthy(connections)
        try await Self.until("CLUSTER SLOTS lists every replica") {
            for c in connections {
                let t = try ClusterTopology(clusterSlots: try await c.run(["CLUSTER", "SLOTS"]), asked: RedisNodeAddress(host: "127.0.0.1", port: 1))
                if t.nodes.count != self.nodes.count || !t.coversAllSlots { return false }
            }
            return true
        }
        for c in connections { await c.close() }
    }

    deinit { for n in nodes { n.stop(signal: SIGKILL) } }

    public var seeds: [RedisNodeAddress] { nodes.filter(\.isRunning).map { RedisNodeAddress(host: "127.0.0.1", port: $0.port) } }

    public func index(of address: RedisNodeAddress) -> Int? { nodes.firstIndex { $0.port == address.port } }

    /// Every running node says cluster_state:ok and every running replica's link is up.
    public func waitHealthy(_ given: [RedisConnection]? = nil, timeout: Duration = .seconds(20)) async throws {
        var connections: [RedisConnection] = []
        if let given { connections = given } else { for n in nodes where n.isRunning { connections.append(try await n.connect()) } }
        try await Self.until("the cluster is healthy", timeout: timeout) {
            for c in connections {
                let info = try await Self.string(c.run(["CLUSTER", "INFO"]))
                guard info.contains("cluster_state:ok") else { return false }
                let replication = try await Self.string(c.run(["INFO", "replication"]))
                if replication.contains("role:slave"), !replication.contains("master_link_status:up") { return false }
            }
            return true
        }
        if given == nil { for c in connections { await c.close() } }
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
