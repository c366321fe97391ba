import AnchorKVCore
import Foundation
import Hummingbird
import HummingbirdTesting
import KVStore
import KnowledgeBase
import LLM
import NIOCore
import SAC
import TestSupport
import XCTest

/// The real `anchorkv serve` binary on a loopback port, driven over HTTP, then stopped with
/// SIGTERM; the store it leaves is reopened and checked.
final class EndToEndTests: XCTestCase {
    struct ServerDidNotStart: Error { var output: String }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
    /// Missing or stale: a failure under tools/test.sh (ANCHORKV_REQUIRE_MODEL=1), else a skip with the reason.
    static func binary() throws -> URL { try CLIBinary.url() }

    /// Starts the server and waits for its "listening on" line; returns the process and port.
    static func startServer(_ arguments: [String], log: URL, environment: [String: String] = [:]) throws -> (Process, Int) {
        let p = Process()
        p.executableURL = try Self.binary()
        p.arguments = ["serve"] + arguments
        p.currentDirectoryURL = Self.root
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // The log goes to a file: a pipe nobody reads could fill and block the server.
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: log)
        try p.run()
        var buffer = Data()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            let text = String(decoding: buffer, as: UTF8.self)
            if let r = text.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression),
               let port = Int(text[r].split(separator: ":").last!) {
                return (p, port)
            }
        }
        p.terminate()
        p.waitUntilExit()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw ServerDidNotStart(output: " \(String(decoding: buffer, as: UTF8.self)) \(text)")
    }

    static func send(_ client: TestClient, _ method: HTTPRequest.Method, _ uri: String, _ json: Any? = nil, raw: ByteBuffer? = nil) async throws -> TestClient.Response {
        let b = raw ?? json.map { ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: $0)) }
        var headers: HTTPFields = [.authorization: "Bearer e2e-token-0123456789abcdef"]
        if b != nil { headers[.contentType] = "application/json" }
        return try await client.execute(TestClient.Request(uri, method: method, headers: headers, body: b))
    }

    static func json(_ r: TestClient.Response) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((r.body ?? ByteBuffer()).readableBytesView)) as? [String: Any])
    }

    func testServeBinaryIngestQueryExportImportAndStopCleanly() async throws {
        let model = try DefaultModel.load()
        _ = try Self.binary()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = dir.appendingPathComponent("store").path

        // A public address without a token is refused before anything is loaded.
        let refused = Process()
        refused.executableURL = try Self.binary()
        refused.arguments = ["serve", "--host", "0.0.0.0", "--store", store]
        refused.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ANCHORKV_API_TOKEN") }
        let refusedErr = Pipe()
        refused.standardError = refusedErr
        refused.standardOutput = FileHandle.nullDevice
        try refused.run()
        refused.waitUntilExit()
        XCTAssertNotEqual(refused.terminationStatus, 0)
        XCTAssertTrue(String(decoding: refusedErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).contains("without an API token"))

        let logFile = dir.appendingPathComponent("serve.log")
        let (server, port) = try Self.startServer(["--store", store, "--no-adapter", "--ratio", "5", "--port", "0", "--threads", "2"], log: logFile,
                                             environment: ["ANCHORKV_API_TOKEN": "e2e-token-0123456789abcdef"])
        var stopped = false
        defer { if !stopped { server.terminate(); server.waitUntilExit() } }
        let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(120)))
        client.connect()

        let health = try await client.execute(TestClient.Request("/health", method: .get))
        XCTAssertEqual(health.status, .ok)
        let r1 = try await client.execute(TestClient.Request("/v1/documents", method: .get))
        XCTAssertEqual(r1.status, .unauthorized)

        let docs = try ["honeybees.md", "danube.md"].map { name in
            ["id": name, "title": name, "text": try String(contentsOf: Self.root.appendingPathComponent("tools/demo/corpus/\(name)"), encoding: .utf8)]
        }
        let ingest = try await Self.send(client, .post, "/v1/documents", ["documents": docs])
        XCTAssertEqual(ingest.status, .ok)
        XCTAssertEqual((try Self.json(ingest)["summary"] as? [String: Any])?["added"] as? Int, 2)

        let query = try await Self.send(client, .post, "/v1/query", ["question": "Where does the Danube begin?", "k": 2, "max_tokens": 8])
        XCTAssertEqual(query.status, .ok)
        let answer = try Self.json(query)
        XCTAssertTrue((answer["citations"] as? [[String: Any]])?.contains { $0["document"] as? String == "danube.md" } == true, "\(answer)")

        let kv = try await Self.send(client, .get, "/v1/documents/danube.md/kv")
        XCTAssertEqual(kv.status, .ok)
        let kvPath = dir.appendingPathComponent("danube.akv").path
        try Data((kv.body ?? ByteBuffer()).readableBytesView).write(to: URL(fileURLWithPath: kvPath))
        XCTAssertEqual(try KVFile.read(kvPath).context.kvDim, model.config.kvDim)

        // Export, lose a document, import the snapshot back: it returns whole, the other is unchanged.
        let snapshot = try await Self.send(client, .post, "/v1/snapshots")
        XCTAssertEqual(snapshot.status, .ok)
        let snapshotBytes = try XCTUnwrap(snapshot.body)
        let deleted = try await Self.send(client, .delete, "/v1/documents/honeybees.md")
        XCTAssertEqual(deleted.status, .ok)
        let imported = try await Self.send(client, .post, "/v1/snapshots/import", raw: snapshotBytes)
        XCTAssertEqual(imported.status, .ok, String(buffer: imported.body ?? ByteBuffer()))
        let report = try Self.json(imported)
        XCTAssertEqual(report["added"] as? [String], ["honeybees.md"])
        XCTAssertEqual(report["unchanged"] as? [String], ["danube.md"])
        let again = try await Self.send(client, .post, "/v1/query", ["question": "Who decoded the waggle dance?", "documents": ["honeybees.md"], "max_tokens": 4])
        XCTAssertEqual(again.status, .ok)

        // Compaction as a job; the adapter of the target ratio comes from the config, as for
        // `anchorkv compact` (training-free anchors when the request says no_adapter).
        let r15 = Self.root.appendingPathComponent("config/adapters/smollm2-135m-sac-r15.safetensors").path
        let hasAdapter = FileManager.default.fileExists(atPath: r15)
        let compact = try await Self.send(client, .post, "/v1/compact", hasAdapter ? ["to_ratio": 15] : ["to_ratio": 15, "no_adapter": true])
        XCTAssertEqual(compact.status, .accepted, String(buffer: compact.body ?? ByteBuffer()))
        let jobID = try XCTUnwrap((try Self.json(compact)["job"] as? [String: Any])?["id"] as? String)
        var job: [String: Any] = [:]
        for _ in 0..<3000 {
            job = try Self.json(try await Self.send(client, .get, "/v1/jobs/\(jobID)"))
            if ["succeeded", "failed", "cancelled"].contains(job["state"] as? String ?? "") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
        XCTAssertEqual(((job["result"] as? [String: Any])?["compacted"] as? [String])?.sorted(), ["danube.md", "honeybees.md"], "\(job)")
        let afterCompaction = try await Self.send(client, .post, "/v1/query", ["question": "Where does the Danube begin?", "documents": ["danube.md"], "max_tokens": 4])
        XCTAssertEqual(afterCompaction.status, .ok, String(buffer: afterCompaction.body ?? ByteBuffer()))

        let metrics = try await Self.send(client, .get, "/metrics")
        XCTAssertTrue(String(buffer: metrics.body ?? ByteBuffer()).contains("anchorkv_store_documents 2"))

        // Over a real socket: a body past max_body_bytes (4 MiB) is refused from its Content-Length.
        let huge = try await Self.send(client, .post, "/v1/documents", ["id": "huge", "text": String(repeating: "x", count: 5 << 20)])
        XCTAssertEqual(huge.status, .contentTooLarge)
        XCTAssertTrue(String(buffer: huge.body ?? ByteBuffer()).contains("payload_too_large"))
        try? await client.shutdown()
        let second = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(60)))
        second.connect()
        let after = try await second.execute(TestClient.Request("/health", method: .get))
        XCTAssertEqual(after.status, .ok, "the server still serves")

        // SIGTERM while an ingest of three documents is encoding the first: that one is finished
        // and acknowledged, the other two are reported not attempted, and the server exits 0.
        let texts = try ["eddystone-lighthouse.md", "printing-press.md", "honeybees.md"].map {
            try String(contentsOf: Self.root.appendingPathComponent("tools/demo/corpus/\($0)"), encoding: .utf8)
        }
        let batch = texts.enumerated().map { ["id": "late-\($0.offset)", "text": $0.element + "\nLate copy."] }
        let slow = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(300)))
        slow.connect()
        let batchBody = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["documents": batch]))
        let inflight = Task<TestClient.Response, any Error> {
            try await slow.execute(TestClient.Request("/v1/documents", method: .post, headers: [.authorization: "Bearer e2e-token-0123456789abcdef"], body: batchBody))
        }
        var busy = false
        for _ in 0..<600 where !busy {
            let stats = try Self.json(try await Self.send(second, .get, "/v1/stats"))
            busy = (stats["ingest"] as? [String: Any])?["busy"] as? Int == 1
            if !busy { try await Task.sleep(for: .milliseconds(50)) }
        }
        XCTAssertTrue(busy, "the ingest started")
        try await second.shutdown()
        kill(server.processIdentifier, SIGTERM)
        let late = try await inflight.value
        try? await slow.shutdown()
        XCTAssertEqual(late.status, .ok, String(buffer: late.body ?? ByteBuffer()))
        let items = try XCTUnwrap(try Self.json(late)["documents"] as? [[String: Any]])
        let statuses = items.map { $0["status"] as? String ?? "" }
        XCTAssertEqual(statuses.first, "added", "\(items)")
        XCTAssertEqual(statuses.last, "not_attempted", "\(items)")
        let acknowledged = items.filter { $0["status"] as? String == "added" }.compactMap { $0["id"] as? String }

        server.waitUntilExit()
        stopped = true
        let log = try String(contentsOf: logFile, encoding: .utf8)
        XCTAssertEqual(server.terminationStatus, 0, log)
        XCTAssertTrue(log.contains("stopped"), log)
        let reopened = try KnowledgeBase.openStore(path: store, model: model, create: false)
        let stored = try reopened.documents()
        XCTAssertEqual(stored.map(\.id).sorted(), (["danube.md", "honeybees.md"] + acknowledged).sorted(),
                       "every acknowledged document is stored, nothing else")
        for d in stored {
            for w in 0..<d.windows { XCTAssertEqual(try reopened.loadKV(d, window: w, layers: model.config.layerCount).count, model.config.layerCount) }
        }
    }
}
