@testable import AnchorKVCore
import Foundation
import TestSupport
import XCTest

/// A store is a folder or a redis:// URL, and a URL is never taken for a folder.
final class StoreLocationTests: XCTestCase {
    typealias Node = StoreLocation.RedisClusterAddress.Node

    func testFoldersAndClusterURLsParse() throws {
        XCTAssertEqual(try StoreLocation.parse("data/store"), .folder("data/store"))
        XCTAssertEqual(try StoreLocation.parse("/tmp/a:b"), .folder("/tmp/a:b"), "a colon alone is not a scheme")
        guard case .redisCluster(let a) = try StoreLocation.parse("redis://127.0.0.1:7000,localhost:7001,[::1]:7002/kb-1") else {
            return XCTFail("not a cluster")
        }
        XCTAssertEqual(a.seeds, [Node(host: "127.0.0.1", port: 7000), Node(host: "localhost", port: 7001), Node(host: "::1", port: 7002)])
        XCTAssertEqual(a.name, "kb-1")
        XCTAssertEqual(a.description, "redis://127.0.0.1:7000,localhost:7001,[::1]:7002/kb-1")
        guard case .redisCluster(let b) = try StoreLocation.parse("REDIS://h:6379") else { return XCTFail("not a cluster") }
        XCTAssertEqual(b.name, StoreLocation.defaultName)
    }

    func testBadURLsAreRefusedWithTheReason() {
        let cases: [(String, String)] = [
            ("http://h:1", "unknown scheme"), ("redis://h", "needs a port"), ("redis://h:0", "1-65535"), ("redis://h:99999", "1-65535"),
            ("redis://user:secret@h:7000", "ANCHORKV_REDIS_PASSWORD"), ("redis://h:7000/bad name", "name"), ("redis://", "needs a port"),
            ("redis://h:7000,", "needs a port"), ("redis://[::1:7000", "[IPv6]:PORT"), ("redis://h$:7000", "host name"), ("", "empty"),
        ]
        for (text, phrase) in cases {
            XCTAssertThrowsError(try StoreLocation.parse(text), text) { e in
                let c = e as? CoreError
                XCTAssertEqual(c?.kind, .invalidConfig, text)
                XCTAssertTrue(c?.message.contains(phrase) ?? false, "\(text): \(c?.message ?? "")")
            }
        }
    }

    /// `--store redis://...` used to create a folder named "redis:"; now it is a cluster: where
    /// none answers, every command says so (exit 4, unavailable) and writes nothing.
    func testTheCLIRefusesAClusterURLAndCreatesNoFolder() throws {
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-url-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        for k in ["ANCHORKV_CONFIG", "ANCHORKV_STORE"] { env[k] = nil }
        for args in [["stats"], ["docs", "list"], ["export", "-o", "x.akvs"], ["query", "bees?"], ["ingest", "--no-adapter", "x.md"]] {
            let r = try runCLI(binary, args + ["--store", "redis://127.0.0.1:7000"], in: dir, environment: env)
            XCTAssertEqual(r.status, 4, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains("Redis Cluster"), r.err)
        }
        let bad = try runCLI(binary, ["stats", "--store", "redis://127.0.0.1"], in: dir, environment: env)
        XCTAssertEqual(bad.status, 1, bad.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "nothing was written")
    }
}
