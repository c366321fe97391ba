import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import RedisTestSupport
import TestSupport
import XCTest

/// Two `anchorkv serve` processes on one Redis Cluster knowledge base: query nodes keep no
/// state of their own, so what one writes the other serves, and both answer alike.
final class ClusterServeTests: XCTestCase {
    func testTwoServeProcessesOnOneClusterAnswerAlike() async throws {
        _ = try CLIBinary.url()
        let cluster = try await LocalRedisCluster()
        let url = "redis://127.0.0.1:\(cluster.seeds[0].port),127.0.0.1:\(cluster.seeds[1].port)/two-nodes"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-two-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let token = ["ANCHORKV_API_TOKEN": "e2e-token-0123456789abcdef", "ANCHORKV_CONFIG": ""]
        let args = ["--store", url, "--no-adapter", "--ratio", "5", "--port", "0", "--threads", "1"]
        let (a, portA) = try EndToEndTests.startServer(args, log: dir.appendingPathComponent("a.log"), environment: token)
        defer { a.terminate(); a.waitUntilExit() }
        let (b, portB) = try EndToEndTests.startServer(args, log: dir.appendingPathComponent("b.log"), environment: token)
        defer { b.terminate(); b.waitUntilExit() }
        let clientA = TestClient(host: "127.0.0.1", port: portA, configuration: .init(timeout: .seconds(120)))
        let clientB = TestClient(host: "127.0.0.1", port: portB, configuration: .init(timeout: .seconds(120)))
        clientA.connect()
        clientB.connect()

        // Written through A, listed and served by B.
        let docs = try ["honeybees.md", "danube.md"].map { name in
            ["id": name, "text": try String(contentsOf: EndToEndTests.root.appendingPathComponent("tools/demo/corpus/\(name)"), encoding: .utf8)]
        }
        let ingest = try await EndToEndTests.send(clientA, .post, "/v1/documents", ["documents": docs])
        XCTAssertEqual(ingest.status, .ok, String(buffer: ingest.body ?? ByteBuffer()))
        func ids(_ c: TestClient) async throws -> [String] {
            let r = try await EndToEndTests.send(c, .get, "/v1/documents")
            XCTAssertEqual(r.status, .ok)
            return (try EndToEndTests.json(r)["documents"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }.sorted()
        }
        let listedA = try await ids(clientA), listedB = try await ids(clientB)
        XCTAssertEqual(listedA, ["danube.md", "honeybees.md"])
        XCTAssertEqual(listedB, listedA)

        for question in ["Where does the Danube begin?", "Who decoded the waggle dance?"] {
            let body: [String: Any] = ["question": question, "k": 2, "max_tokens": 8]
            let ra = try EndToEndTests.json(try await EndToEndTests.send(clientA, .post, "/v1/query", body))
            let rb = try EndToEndTests.json(try await EndToEndTests.send(clientB, .post, "/v1/query", body))
            XCTAssertNotNil(ra["answer"] as? String, "\(ra)")
            XCTAssertEqual(ra["answer"] as? String, rb["answer"] as? String, question)
            let cite = { (r: [String: Any]) in (r["citations"] as? [[String: Any]] ?? []).compactMap { $0["document"] as? String } }
            XCTAssertEqual(cite(ra), cite(rb), question)
            XCTAssertFalse(cite(ra).isEmpty, "\(ra)")
        }

        // Deleted through B: gone for A too; A's stats count what B's do.
        let deleted = try await EndToEndTests.send(clientB, .delete, "/v1/documents/danube.md")
        XCTAssertEqual(deleted.status, .ok)
        let afterA = try await ids(clientA)
        XCTAssertEqual(afterA, ["honeybees.md"])
        let missing = try await EndToEndTests.send(clientA, .get, "/v1/documents/danube.md")
        XCTAssertEqual(missing.status, .notFound)
        let statsA = try EndToEndTests.json(try await EndToEndTests.send(clientA, .get, "/v1/stats"))
        let statsB = try EndToEndTests.json(try await EndToEndTests.send(clientB, .get, "/v1/stats"))
        XCTAssertEqual((statsA["store"] as? [String: Any])?["documents"] as? Int, 1, "\(statsA)")
        XCTAssertEqual((statsB["store"] as? [String: Any])?["documents"] as? Int, 1, "\(statsB)")

        // One node going away leaves the other serving.
        try await clientA.shutdown()
        a.terminate()
        a.waitUntilExit()
        XCTAssertEqual(a.terminationStatus, 0)
        let still = try await EndToEndTests.send(clientB, .post, "/v1/query", ["question": "Who decoded the waggle dance?", "max_tokens": 4])
        XCTAssertEqual(still.status, .ok, String(buffer: still.body ?? ByteBuffer()))
        try await clientB.shutdown()
    }
}
