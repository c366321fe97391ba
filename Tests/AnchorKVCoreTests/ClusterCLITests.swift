import Foundation
import RedisCluster
import RedisTestSupport
import TestSupport
import XCTest

/// The CLI, debug and release, on a knowledge base in a Redis Cluster of the test's own.
final class ClusterCLITests: XCTestCase {
    func testEveryCommandOnAClusterStore() async throws {
        let debug = try CLIBinary.url(), release = try CLIBinary.releaseURL()
        let cluster = try await LocalRedisCluster()
        let url = "redis://127.0.0.1:\(cluster.seeds[0].port)/cli-test"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-cluster-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let corpus = CLIBinary.root.appendingPathComponent("tools/demo/corpus")
        try await onThread {
            var env = ProcessInfo.processInfo.environment
            for k in ["ANCHORKV_CONFIG", "ANCHORKV_STORE"] { env[k] = nil }
            func run(_ binary: URL, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
                let r = try runCLI(binary, args + ["--store", url], environment: env)
                XCTAssertFalse(r.crashed, "\(args): \(r.err)")
                return (r.status, r.out, r.err)
            }
            func json(_ s: String) throws -> [String: Any] {
                try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], s)
            }
            let files = ["honeybees.md", "danube.md"].map { corpus.appendingPathComponent($0).path }
            let ingest = try run(debug, ["ingest", "--json"] + files)
            XCTAssertEqual(ingest.status, 0, ingest.err)
            let listed = try run(debug, ["docs", "list", "--json"]).out
            let ids = (try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            XCTAssertEqual(ids.sorted(), ["danube.md", "honeybees.md"], listed)
            // Nothing was interrupted: a sweep finds nothing, and the counters agree.
            let sweep = try run(release, ["sweep", "--older-than", "0s", "--json"])
            XCTAssertEqual(sweep.status, 0, sweep.err)
            let swept = try json(sweep.out)
            XCTAssertEqual(swept["versions_removed"] as? Int, 0, sweep.out)
            XCTAssertEqual(swept["counters_fixed"] as? Bool, false, sweep.out)
            XCTAssertEqual((swept["counters_after"] as? [String: Any])?["documents"] as? Int, 2, sweep.out)
            let stats = try json(try run(release, ["stats", "--json"]).out)
            XCTAssertEqual(stats["documents"] as? Int, 2, "\(stats)")
            XCTAssertEqual(stats["store"] as? String, url)
            // The same answer from both builds, and with a document named.
            let q = ["query", "Who decoded the waggle dance?", "--max-tokens", "8", "--json"]
            let a = try run(debug, q), b = try run(release, q)
            XCTAssertEqual(a.status, 0, a.err)
            XCTAssertEqual(try json(a.out)["answer"] as? String, try json(b.out)["answer"] as? String)
            XCTAssertFalse(((try json(a.out)["citations"]) as? [Any] ?? []).isEmpty)
            let show = try run(release, ["docs", "show", "danube.md", "--json"])
            XCTAssertEqual(show.status, 0, show.err)
            let delete = try run(debug, ["docs", "delete", "danube.md"])
            XCTAssertEqual(delete.status, 0, delete.err)
            let gone = try run(debug, ["docs", "show", "danube.md"])
            XCTAssertEqual(gone.status, 2, gone.err)
            let after = try json(try run(debug, ["stats", "--json"]).out)
            XCTAssertEqual(after["documents"] as? Int, 1)
            // Export from the cluster, import into a folder: the folder answers alike.
            let file = dir.appendingPathComponent("kb.akvs").path
            let export = try run(release, ["export", "-o", file])
            XCTAssertEqual(export.status, 0, export.err)
            let folder = dir.appendingPathComponent("store").path
            let imp = try runCLI(debug, ["import", file, "--store", folder], environment: env)
            XCTAssertEqual(imp.status, 0, imp.err)
            let q2 = ["query", "What do honey bees live in?", "--max-tokens", "8", "--json"]
            let c = try run(debug, q2)
            XCTAssertEqual(c.status, 0, c.err)
            let f = try runCLI(debug, q2 + ["--store", folder], environment: env)
            XCTAssertEqual(f.status, 0, f.err)
            XCTAssertEqual(try json(c.out)["answer"] as? String, try json(f.out)["answer"] as? String)
        }
    }

    /// A password-protected cluster: the CLI takes the password from a file named by
    /// ANCHORKV_REDIS_PASSWORD_FILE; without it, a clear error says where to set it.
    func testPasswordFromTheEnvironment() async throws {
        let debug = try CLIBinary.url()
        let cluster = try await LocalRedisCluster(password: "akv-cli-secret")
        let url = "redis://127.0.0.1:\(cluster.seeds[0].port)/auth-test"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-cluster-auth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = dir.appendingPathComponent("redis-password")
        try "akv-cli-secret\n".write(to: secret, atomically: true, encoding: .utf8)
        try await onThread {
            var env = ProcessInfo.processInfo.environment
            for k in ["ANCHORKV_CONFIG", "ANCHORKV_STORE", "ANCHORKV_REDIS_PASSWORD", "ANCHORKV_REDIS_PASSWORD_FILE"] { env[k] = nil }
            let refused = try runCLI(debug, ["stats", "--json", "--store", url], environment: env)
            XCTAssertEqual(refused.status, 1, "invalid config")
            XCTAssertFalse(refused.crashed, refused.err)
            XCTAssertTrue(refused.err.contains("NOAUTH") && refused.err.contains("ANCHORKV_REDIS_PASSWORD"), refused.err)
            env["ANCHORKV_REDIS_PASSWORD_FILE"] = secret.path
            let ingest = try runCLI(debug, ["ingest", CLIBinary.root.appendingPathComponent("tools/demo/corpus/danube.md").path, "--store", url], environment: env)
            XCTAssertEqual(ingest.status, 0, ingest.err)
            let stats = try runCLI(debug, ["stats", "--json", "--store", url], environment: env)
            XCTAssertEqual(stats.status, 0, stats.err)
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [String: Any], stats.out)
            XCTAssertEqual(o["documents"] as? Int, 1, stats.out)
        }
    }
}
