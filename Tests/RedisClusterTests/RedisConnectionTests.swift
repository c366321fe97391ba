import Foundation
import RedisTestSupport
import XCTest
@testable import RedisCluster

final class RedisConnectionTests: XCTestCase {
    func testCommandsPipelinesTransactionsAndBinaryValues() async throws {
        let redis = try LocalRedis()
        let c = try await redis.connect()
        let set = try await c.run(["SET", "k", "v"]), get = try await c.run(["GET", "k"]), missing = try await c.run(["GET", "missing"])
        XCTAssertEqual(set, .simpleString("OK"))
        XCTAssertEqual(get, .bulkString(Array("v".utf8)))
        XCTAssertEqual(missing, .bulkString(nil))
        // 1,000 commands in one write, replies in order.
        let incrs = (0..<1000).map { _ in [Array("INCR".utf8), Array("n".utf8)] }
        let replies = try await c.pipeline(incrs)
        XCTAssertEqual(replies, (1...1000).map { .integer(Int64($0)) })
        // A binary value of 3 MiB (every byte value, CR LF included) round-trips whole.
        let blob = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await c.run([Array("SET".utf8), Array("{doc}blob".utf8), blob])
        let back = try await c.run([Array("GET".utf8), Array("{doc}blob".utf8)])
        XCTAssertEqual(back, .bulkString(blob))
        // MULTI/EXEC: one reply per queued command, then the transaction's array.
        let tx = try await c.pipeline([["MULTI"], ["SET", "{doc}m", "1"], ["INCR", "{doc}m"], ["EXEC"]].map { $0.map { Array($0.utf8) } })
        XCTAssertEqual(tx, [.simpleString("OK"), .simpleString("QUEUED"), .simpleString("QUEUED"), .array([.simpleString("OK"), .integer(2)])])
        // An error reply is a value in a pipeline and thrown by run.
        do {
            try await c.run(["INCR", "k"])
            XCTFail("INCR of a string")
        } catch RedisError.reply(let m) {
            XCTAssertTrue(m.hasPrefix("ERR"), m)
        }
        XCTAssertTrue(c.isActive, "an error reply leaves the connection usable")
        let pong = try await c.run(["PING"])
        XCTAssertEqual(pong, .simpleString("PONG"))
        await c.close()
    }

    /// A reply that does not come in time fails the caller and closes the connection; a node
    /// that goes away fails what is pending; a refused connect is an error, not a hang.
    func testTimeoutsAndLostNodesFailPendingCommands() async throws {
        let redis = try LocalRedis()
        let c = try await redis.connect()
        let start = ContinuousClock.now
        do {
            _ = try await c.pipeline([["BLPOP", "never", "5"].map { Array($0.utf8) }], timeout: .milliseconds(200))
            XCTFail("BLPOP on an empty list answered")
        } catch RedisError.timedOut {}
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
        // The close runs on the connection's event loop: give a loaded machine a moment.
        let closing = ContinuousClock.now
        while c.isActive && ContinuousClock.now - closing < .seconds(2) { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertFalse(c.isActive, "a timed-out connection is closed")

        let d = try await redis.connect()
        async let pending = d.pipeline([["BLPOP", "never", "30"].map { Array($0.utf8) }], timeout: .seconds(20))
        try await Task.sleep(for: .milliseconds(100))
        redis.stop()
        do {
            _ = try await pending
            XCTFail("answered by a stopped server")
        } catch RedisError.connectionClosed {}

        do {
            _ = try await RedisConnection.connect(host: "127.0.0.1", port: redis.port, timeout: .seconds(1))
            XCTFail("connected to a stopped server")
        } catch RedisError.connectionClosed {}
    }
}
