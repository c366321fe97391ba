import Foundation
import RedisTestSupport
import XCTest
@testable import RedisCluster

final class ClusterTopologyTests: XCTestCase {
    func bulk(_ s: String) -> RESPValue { .bulkString(Array(s.utf8)) }

    func testParsesClusterSlotsAndSplitsOnMoved() throws {
        let asked = RedisNodeAddress(host: "10.0.0.9", port: 7000)
        let reply: RESPValue = .array([
            .array([.integer(5461), .integer(16383), .array([bulk("10.0.0.2"), .integer(7001), bulk("id2")]), .array([bulk("10.0.0.5"), .integer(7004), bulk("id5")])]),
            .array([.integer(0), .integer(5460), .array([bulk(""), .integer(7000), bulk("id1")])]),
        ])
        var t = try ClusterTopology(clusterSlots: reply, asked: asked)
        XCTAssertTrue(t.coversAllSlots)
        XCTAssertEqual(t.master(of: 0), asked, "an empty host is the node asked")
        XCTAssertEqual(t.master(of: 5461), RedisNodeAddress(host: "10.0.0.2", port: 7001))
        XCTAssertEqual(t.range(of: 16383)?.replicas, [RedisNodeAddress(host: "10.0.0.5", port: 7004)])
        XCTAssertEqual(t.nodes.count, 3)
        XCTAssertEqual(t.masters.count, 2)

        let b = RedisNodeAddress(host: "10.0.0.3", port: 7002)
        t.move(slot: 6000, to: b)
        XCTAssertEqual(t.master(of: 6000), b)
        XCTAssertEqual(t.master(of: 5999), RedisNodeAddress(host: "10.0.0.2", port: 7001))
        XCTAssertEqual(t.master(of: 6001), RedisNodeAddress(host: "10.0.0.2", port: 7001))
        XCTAssertTrue(t.coversAllSlots)

        XCTAssertEqual(RedisNodeAddress("127.0.0.1:30001@40001"), RedisNodeAddress(host: "127.0.0.1", port: 30001))
        XCTAssertEqual(RedisNodeAddress("::1:6379"), RedisNodeAddress(host: "::1", port: 6379))
        XCTAssertEqual(RedisNodeAddress("[::1]:6379")?.description, "[::1]:6379")
        XCTAssertNil(RedisNodeAddress("host:99999"))
    }

    func testRefusesMalformedClusterSlots() {
        let asked = RedisNodeAddress(host: "h", port: 1)
        let overlapping: RESPValue = .array([
            .array([.integer(0), .integer(100), .array([bulk("a"), .integer(1)])]),
            .array([.integer(50), .integer(200), .array([bulk("b"), .integer(2)])]),
        ])
        XCTAssertThrowsError(try ClusterTopology(clusterSlots: overlapping, asked: asked))
        XCTAssertThrowsError(try ClusterTopology(clusterSlots: .array([.array([.integer(0), .integer(16384), .array([bulk("a"), .integer(1)])])]), asked: asked))
        XCTAssertThrowsError(try ClusterTopology(clusterSlots: .array([.array([.integer(0), .integer(1)])]), asked: asked))
        XCTAssertThrowsError(try ClusterTopology(clusterSlots: .simpleString("OK"), asked: asked))
    }
}

/// Against a 3-master, 3-replica cluster of the test's own on loopback ports.
final class RedisClusterClientTests: XCTestCase {
    func key(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testRoutesByKeySlotAndFollowsAskAndMoved() async throws {
        let cluster = try await LocalRedisCluster()
        let client = RedisClusterClient(seeds: [cluster.seeds[0]])
        let t = try await client.currentTopology()
        XCTAssertTrue(t.coversAllSlots)
        XCTAssertEqual(t.masters.count, 3)
        XCTAssertEqual(t.nodes.count, 6)

        // Keys land on all three masters and read back through the client.
        for i in 0..<60 {
            let k = "key-\(i)"
            try await client.run([key("SET"), key(k), key("v\(i)")], slot: HashSlot.slot(of: k))
        }
        for i in 0..<60 {
            let k = "key-\(i)"
            let v = try await client.run([key("GET"), key(k)], slot: HashSlot.slot(of: k), readOnly: true)
            XCTAssertEqual(v, .bulkString(key("v\(i)")))
        }
        let before = await client.counters
        XCTAssertEqual(before.moved, 0)

        // Move the slot of {doc} from its master to another one, as resharding does.
        let slot = HashSlot.slot(of: "{doc}")
        guard let from = t.master(of: slot), let source = cluster.index(of: from) else { return XCTFail("no master for \(slot)") }
        let target = (source + 1) % cluster.masters
        let src = try await cluster.nodes[source].connect(), dst = try await cluster.nodes[target].connect()
        try await client.transaction([[key("SET"), key("{doc}a"), key("1")], [key("SET"), key("{doc}b"), key("2")]], slot: slot)
        try await dst.run(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", cluster.ids[source]])
        try await src.run(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", cluster.ids[target]])
        // Mid-migration: a key the source no longer has is answered by the target after ASK.
        let newKey = try await client.pipeline([[key("SET"), key("{doc}new"), key("3")]], slot: slot)
        XCTAssertEqual(newKey, [.simpleString("OK")])
        let asked = await client.counters.asked
        XCTAssertGreaterThanOrEqual(asked, 1)
        try await src.run(["MIGRATE", "127.0.0.1", String(cluster.nodes[target].port), "", "0", "5000", "KEYS", "{doc}a", "{doc}b"])
        for n in 0..<cluster.masters {
            let c = try await cluster.nodes[n].connect()
            try await c.run(["CLUSTER", "SETSLOT", String(slot), "NODE", cluster.ids[target]])
            await c.close()
        }
        // The client's map is stale: MOVED takes it to the new owner.
        let tx = try await client.transaction([[key("GET"), key("{doc}a")], [key("GET"), key("{doc}new")]], slot: slot)
        XCTAssertEqual(tx.replies, [.bulkString(key("1")), .bulkString(key("3"))])
        let moved = await client.counters.moved
        XCTAssertGreaterThanOrEqual(moved, 1)
        let owner = try await client.refreshTopology().master(of: slot)
        XCTAssertEqual(owner?.port, cluster.nodes[target].port)
        await src.close(); await dst.close()
        await client.close()
    }

    /// A cluster that requires a password (requirepass, masterauth for its replicas): the client
    /// with it reads, writes and gets WAIT acknowledgements; without it or with a wrong one the
    /// first command fails at once as an authentication failure, not after the retry budget.
    func testPasswordProtectedCluster() async throws {
        let cluster = try await LocalRedisCluster(password: "akv-test-secret")
        var options = RedisClusterClient.Options()
        options.password = "akv-test-secret"
        let client = RedisClusterClient(seeds: cluster.seeds, options: options)
        let key = Array("{auth}k".utf8), slot = HashSlot.slot(of: "{auth}k")
        _ = try await client.run([Array("SET".utf8), key, Array("v".utf8)], slot: slot)
        let got = try await client.run([Array("GET".utf8), key], slot: slot)
        XCTAssertEqual(got, .bulkString(Array("v".utf8)))
        let t = try await client.transaction([[Array("SET".utf8), key, Array("w".utf8)]], slot: slot, waitReplicas: 1)
        XCTAssertEqual(t.replicasAcknowledged, 1, "the replica authenticated to its master and replicates")
        await client.close()

        for password in [nil, "wrong-password"] {
            var o = RedisClusterClient.Options()
            o.password = password
            let other = RedisClusterClient(seeds: cluster.seeds, options: o)
            let start = ContinuousClock.now
            do {
                _ = try await other.run([Array("GET".utf8), key], slot: slot)
                XCTFail("a command without the right password succeeded")
            } catch let e as RedisError {
                guard case .authenticationFailed(let m) = e else { return XCTFail("\(e)") }
                XCTAssertTrue(m.contains(password == nil ? "NOAUTH" : "WRONGPASS"), m)
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "not retried")
            await other.close()
        }
    }

    /// kill -9 of a master while documents are written (MULTI/EXEC + WAIT 1): the client rides
    /// the failover; every write WAIT confirmed on a replica is there afterwards.
    func testMasterKilledDuringWritesLosesNoAcknowledgedWrite() async throws {
        let cluster = try await LocalRedisCluster(nodeTimeoutMs: 1000)
        var options = RedisClusterClient.Options()
        options.retryFor = .seconds(15)
        let client = RedisClusterClient(seeds: cluster.seeds, options: options)
        let slot = HashSlot.slot(of: "{docs}")
        guard let master = try await client.currentTopology().master(of: slot), let victim = cluster.index(of: master) else {
            return XCTFail("no master")
        }
        var acknowledged: [Int] = [], unacknowledged: [Int] = []
        let start = ContinuousClock.now
        var killedAt: ContinuousClock.Instant?
        var recoveredAfter: Duration?
        for i in 0..<400 {
            if i == 40 {
                cluster.nodes[victim].stop(signal: SIGKILL)
                killedAt = .now
            }
            let value = key(String(repeating: "x", count: 1000) + "\(i)")
            let r = try await client.transaction([[key("SET"), key("{docs}\(i)"), value], [key("SADD"), key("{docs}all"), key("\(i)")]],
                                                 slot: slot, waitReplicas: 1, waitTimeout: .milliseconds(200))
            if let killedAt, recoveredAfter == nil { recoveredAfter = .now - killedAt }
            if (r.replicasAcknowledged ?? 0) >= 1 { acknowledged.append(i) } else { unacknowledged.append(i) }
            if unacknowledged.count >= 5 || ContinuousClock.now - start > .seconds(15) { break }
        }
        print("failover: writes resumed \(recoveredAfter.map { "\($0)" } ?? "-") after the kill; \(acknowledged.count) acknowledged, \(unacknowledged.count) not")
        XCTAssertGreaterThanOrEqual(acknowledged.count, 40)
        XCTAssertFalse(unacknowledged.isEmpty, "after the failover the new master has no replica: WAIT must say 0")
        if let recoveredAfter { XCTAssertLessThan(recoveredAfter, .seconds(10), "writes resumed \(recoveredAfter) after the kill") }
        let newMaster = try await client.refreshTopology().master(of: slot)
        XCTAssertNotEqual(newMaster, master, "a replica took over")
        for i in acknowledged {
            let v = try await client.run([key("GET"), key("{docs}\(i)")], slot: slot)
            XCTAssertEqual(v, .bulkString(key(String(repeating: "x", count: 1000) + "\(i)")), "acknowledged write \(i) lost")
        }
        await client.close()
    }
}
