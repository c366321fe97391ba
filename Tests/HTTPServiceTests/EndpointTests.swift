@testable import AnchorKVCore
import Foundation
import HTTPService
import Hummingbird
import HummingbirdTesting
import KVStore
import KnowledgeBase
import LLM
import SAC
import TestSupport
import XCTest

/// Every endpoint in process through Hummingbird's router test framework (no sockets), with the
/// real model and a real RocksDB store in a temporary folder.
final class EndpointTests: XCTestCase {
    func testHealthMetricsAndStats() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            let health = try await client.get("/health")
            XCTAssertEqual(health.status, .ok)
            XCTAssertEqual(try object(health)["status"] as? String, "ok")

            _ = try await client.post("/v1/documents", Docs.bees)
            let stats = try object(try await client.get("/v1/stats"))
            let store = try XCTUnwrap(stats["store"] as? [String: Any])
            XCTAssertEqual(store["documents"] as? Int, 1)
            XCTAssertGreaterThan(store["kv_bytes"] as? Int ?? 0, 0)
            XCTAssertEqual((stats["ingest"] as? [String: Any])?["ratio"] as? Int, 5)

            let metrics = try await client.get("/metrics")
            XCTAssertEqual(metrics.status, .ok)
            XCTAssertEqual(metrics.headers[.contentType], "text/plain; version=0.0.4; charset=utf-8")
            let text = String(buffer: metrics.body)
            for want in ["anchorkv_store_documents 1", "anchorkv_store_bytes_per_token ", "anchorkv_store_disk_bytes ",
                         #"anchorkv_http_requests_total{method="POST",route="/v1/documents",status="200"} 1"#,
                         #"anchorkv_http_request_duration_seconds_bucket{method="GET",route="/health""#,
                         #"anchorkv_ingest_documents_total{status="added"} 1"#, "anchorkv_ingest_document_seconds_count 1",
                         "anchorkv_ingest_tokens_total "] {
                XCTAssertTrue(text.contains(want), "metrics lack \(want):\n\(text)")
            }
        }
    }

    /// Starting the service registers nothing (the first document's batch brings its adapter's
    /// registration); a store that holds the service's ratio with another adapter is refused at start.
    func testTheAdapterIsRegisteredWithTheFirstDocumentAndCheckedAtStart() async throws {
        let f = try Fixture()
        XCTAssertNil(f.kb.store.manifest.adapters["5"])
        try await f.app.test(.router) { client in
            let r = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
        }
        XCTAssertEqual(f.kb.store.manifest.adapters["5"], "none")

        let model = try DefaultModel.load()
        let store = try KnowledgeBase.openStore(path: f.dir.appendingPathComponent("other").path, model: model, create: true)
        try store.registerAdapter(ratio: 5, fingerprint: "another-adapter")
        let kb = try KnowledgeBase(store: store, model: model, adapter: nil, ratio: 5)
        let core = KnowledgeService(config: AppConfig(), model: model, kb: kb, catalog: AdapterCatalog(model: model, config: AppConfig()))
        XCTAssertThrowsError(try AnchorService(core: core, config: ServiceConfig())) {
            XCTAssertTrue("\($0)".contains("made with adapter another-adapter"), "\($0)")
        }
    }

    /// The HTTP ingest lane applies the knowledge base's per-document bounds (config "ingest").
    func testIngestBoundsApplyOverHTTP() async throws {
        let f = try Fixture()
        f.kb.limits.maxDocumentTokens = 20
        try await f.app.test(.router) { client in
            let r = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(r.status, .badRequest, String(buffer: r.body))
            XCTAssertTrue(String(buffer: r.body).contains("more than ingest.max_document_tokens (20)"), String(buffer: r.body))
            f.kb.limits = IngestLimits(maxDocumentTokens: 65536, maxDocumentSeconds: 0)
            let slow = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(slow.status, .badRequest, String(buffer: slow.body))
            XCTAssertTrue(String(buffer: slow.body).contains("ingest.max_document_seconds"), String(buffer: slow.body))
            f.kb.limits = IngestLimits()
            let ok = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))
        }
        XCTAssertEqual(try f.kb.store.documents().map(\.id), ["bees"])
    }

    func testIngestListGetDeleteAndUnknownIds() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            let one = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(one.status, .ok, String(buffer: one.body))
            let doc = try XCTUnwrap((try object(one)["documents"] as? [[String: Any]])?.first)
            XCTAssertEqual(doc["id"] as? String, "bees")
            XCTAssertEqual(doc["status"] as? String, "added")
            XCTAssertGreaterThan(doc["tokens"] as? Int ?? 0, 10)
            XCTAssertGreaterThan(doc["kv_bytes"] as? Int ?? 0, 0)
            XCTAssertGreaterThan(doc["bytes_per_token"] as? Double ?? 0, 0)

            let again = try object(try await client.post("/v1/documents", Docs.bees))
            XCTAssertEqual((again["documents"] as? [[String: Any]])?.first?["status"] as? String, "unchanged")

            // Many at once; an id with a slash and a space (percent-encoded in paths).
            var odd = Docs.press
            odd["id"] = "notes/print press.md"
            let many = try await client.post("/v1/documents", ["documents": [Docs.river, odd]])
            let summary = try XCTUnwrap(try object(many)["summary"] as? [String: Any])
            XCTAssertEqual(summary["added"] as? Int, 2)
            XCTAssertGreaterThan(summary["kv_bytes"] as? Int ?? 0, 0)

            let list = try object(try await client.get("/v1/documents"))
            XCTAssertEqual(list["total"] as? Int, 3)
            XCTAssertEqual((list["documents"] as? [[String: Any]])?.compactMap { $0["id"] as? String }.sorted(), ["bees", "notes/print press.md", "river"])
            let page = try object(try await client.get("/v1/documents?limit=1&offset=1"))
            XCTAssertEqual((page["documents"] as? [Any])?.count, 1)
            try expectError(try await client.get("/v1/documents?limit=0"), .badRequest, "invalid_input")

            let encoded = "notes%2Fprint%20press.md"
            let shown = try object(try await client.get("/v1/documents/\(encoded)?windows=true"))
            XCTAssertEqual(shown["id"] as? String, "notes/print press.md")
            XCTAssertEqual(shown["title"] as? String, "Printing press")
            XCTAssertTrue((shown["window_texts"] as? [String])?.first?.contains("Gutenberg") == true)

            let deleted = try await client.execute(uri: "/v1/documents/\(encoded)", method: .delete)
            XCTAssertEqual(deleted.status, .ok)
            try expectError(try await client.execute(uri: "/v1/documents/\(encoded)", method: .delete), .notFound, "not_found")
            try expectError(try await client.get("/v1/documents/\(encoded)"), .notFound, "not_found")
            try expectError(try await client.get("/v1/documents/nope/kv"), .notFound, "not_found")
            try expectError(try await client.get("/v1/jobs/job-nope"), .notFound, "not_found")
            try expectError(try await client.get("/v1/nothing-here"), .notFound, "not_found")
            XCTAssertEqual(try f.kb.store.documents().map(\.id).sorted(), ["bees", "river"])
        }
    }

    func testQueryAnswersAsTheKnowledgeBaseDoes() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river, Docs.press]])
            let r = try await client.post("/v1/query", ["question": "Who decoded the waggle dance of bees?", "k": 1, "max_tokens": 8])
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
            let o = try object(r)
            let citations = try XCTUnwrap(o["citations"] as? [[String: Any]])
            XCTAssertEqual(citations.map { $0["document"] as? String }, ["bees"])
            XCTAssertNotNil(citations[0]["score"] as? Double)
            let timings = try XCTUnwrap(o["timings"] as? [String: Double])
            for k in ["queue_s", "retrieve_s", "load_s", "first_token_s", "decode_s", "total_s"] { XCTAssertNotNil(timings[k], k) }
            let direct = try f.kb.query("Who decoded the waggle dance of bees?", k: 1, maxTokens: 8)
            XCTAssertEqual(o["answer"] as? String, direct.answer, "the HTTP answer is the knowledge base's answer")
            XCTAssertEqual(o["answer_tokens"] as? Int, direct.answerTokens.count)

            // A document filter without k reads every window of those documents.
            let filtered = try object(try await client.post("/v1/query", ["question": "Where does it flow?", "documents": ["river"], "max_tokens": 4]))
            XCTAssertEqual((filtered["citations"] as? [[String: Any]])?.map { $0["document"] as? String }, ["river"])
            let msg = try expectError(try await client.post("/v1/query", ["question": "x", "documents": ["river", "gone"]]), .notFound, "not_found")
            XCTAssertTrue(msg.contains("'gone'"), msg)
        }
    }

    func testQueryStreamsServerSentEvents() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river]])
            let question = "Where does the Danube rise?"
            let plain = try object(try await client.post("/v1/query", ["question": question, "k": 1, "max_tokens": 12]))
            let r = try await client.post("/v1/query", ["question": question, "k": 1, "max_tokens": 12], headers: [.accept: "text/event-stream"])
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "text/event-stream; charset=utf-8")
            var tokens = "", done: [String: Any]?
            for frame in String(buffer: r.body).components(separatedBy: "\n\n") where !frame.isEmpty {
                let lines = frame.split(separator: "\n")
                XCTAssertEqual(lines.count, 2, frame)
                let data = try JSONSerialization.jsonObject(with: Data(lines[1].dropFirst("data: ".count).utf8)) as! [String: Any]
                switch lines[0] {
                case "event: token": tokens += data["text"] as! String
                case "event: done": done = data
                default: XCTFail("unexpected \(frame)")
                }
            }
            let d = try XCTUnwrap(done)
            XCTAssertEqual(d["answer"] as? String, plain["answer"] as? String)
            XCTAssertEqual(tokens, plain["answer"] as? String, "token events add up to the answer")
            XCTAssertFalse(tokens.isEmpty)
            // Errors before the first token are plain JSON errors, not a stream.
            try expectError(try await client.post("/v1/query", ["question": "q", "documents": ["nope"], "stream": true]), .notFound, "not_found")
        }
    }

    func testBadInputIsA4xxWithAJSONBodyAndChangesNothing() async throws {
        let f = try Fixture { $0.maxBodyBytes = 4096 }
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.bees)
            let before = try f.kb.store.documents()
            let cases: [(String, ByteBuffer, HTTPResponse.Status, String)] = [
                ("/v1/documents", body("{\"id\": \"x\", \"text\": "), .badRequest, "invalid_json"),
                ("/v1/documents", body("[1, 2]"), .badRequest, "invalid_json"),
                ("/v1/documents", body(""), .badRequest, "invalid_json"),
                ("/v1/documents", body(["id": "x"]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": "x", "text": "   "]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": "", "text": "t"]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": 7, "text": "t"]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": "x", "text": "t", "colour": "red"]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": "x", "text": "a\u{0}b"]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["documents": []]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["documents": [Docs.river, Docs.river]]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["documents": [Docs.river, ["id": "y"]]]), .badRequest, "invalid_input"),
                ("/v1/documents", body(["id": "big", "text": String(repeating: "word ", count: 1000)]), .contentTooLarge, "payload_too_large"),
                ("/v1/query", body("not json"), .badRequest, "invalid_json"),
                ("/v1/query", body(["k": 2]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": ""]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "k": 0]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "k": "two"]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "max_tokens": 100000]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "documents": []]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "maxtokens": 3]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "q", "stream": "yes"]), .badRequest, "invalid_input"),
                ("/v1/query", body(["question": "zebra xylophone quokka"]), .badRequest, "invalid_input"),
            ]
            for (uri, b, status, code) in cases {
                let r = try await client.execute(uri: uri, method: .post, body: b)
                let message = try expectError(r, status, code)
                XCTAssertFalse(message.contains("HTTPError"), message)
            }
            try expectError(try await client.post("/v1/query", ["question": String(repeating: "long ", count: 1000)]), .contentTooLarge, "payload_too_large")
            try expectError(try await client.get("/v1/documents/bees/kv?format=xml"), .badRequest, "invalid_input")
            try expectError(try await client.get("/v1/documents/bees/kv?dtype=int4"), .badRequest, "invalid_input")
            XCTAssertEqual(try f.kb.store.documents(), before, "no bad request changed the store")
        }
    }

    func testBearerTokenGuardsEverythingButHealth() async throws {
        let token = "s3cret-token-0123456789"
        let f = try Fixture { $0.apiToken = token; $0.host = "0.0.0.0" }
        try await f.app.test(.router) { client in
            let r1 = try await client.get("/health")
            XCTAssertEqual(r1.status, .ok)
            for (uri, method) in [("/v1/documents", HTTPRequest.Method.get), ("/metrics", .get), ("/v1/query", .post), ("/v1/documents/x", .delete),
                                  ("/v1/jobs", .get), ("/v1/stats", .get)] {
                let none = try await client.execute(uri: uri, method: method, body: body(["question": "q"]))
                try expectError(none, .unauthorized, "unauthorized")
                XCTAssertNotNil(none.headers[.wwwAuthenticate])
                let wrong = try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(token)x"])
                try expectError(wrong, .unauthorized, "unauthorized")
            }
            try expectError(try await client.get("/v1/documents", headers: [.authorization: "Basic \(token)"]), .unauthorized, "unauthorized")
            try expectError(try await client.get("/v1/documents", headers: [.authorization: "Bearer"]), .unauthorized, "unauthorized")
            let ok = try await client.get("/v1/documents", headers: [.authorization: "Bearer \(token)"])
            XCTAssertEqual(ok.status, .ok)
            let metrics = try await client.get("/metrics", headers: [.authorization: "bearer \(token)"])
            XCTAssertTrue(String(buffer: metrics.body).contains(#"status="401""#), "auth failures are counted")
        }
    }

    func testConfigRefusesAPublicAddressWithoutAToken() throws {
        var c = ServiceConfig()
        XCTAssertNoThrow(try c.validate())
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] { XCTAssertTrue(ServiceConfig.isLoopback(host), host) }
        for host in ["0.0.0.0", "10.0.0.5", "::", "example.org", "127.0.0", "1270.0.0.1"] { XCTAssertFalse(ServiceConfig.isLoopback(host), host) }
        c.host = "0.0.0.0"
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("without an API token"), "\($0)") }
        c.apiToken = "short"
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("at least"), "\($0)") }
        c.apiToken = "0123456789abcdef0123"
        XCTAssertNoThrow(try c.validate())
        c.port = 70000
        XCTAssertThrowsError(try c.validate())

        var d = ServiceConfig()
        try d.apply(json: ["host": "0.0.0.0", "port": 9000, "max_body_bytes": 1024, "request_timeout_s": 2.5], root: URL(fileURLWithPath: "/"))
        XCTAssertEqual(d.port, 9000)
        XCTAssertEqual(d.maxBodyBytes, 1024)
        XCTAssertEqual(d.requestTimeout, 2.5)
        XCTAssertThrowsError(try d.apply(json: ["port": "80"], root: URL(fileURLWithPath: "/")))
        XCTAssertThrowsError(try d.apply(json: ["max_body_byte": 10], root: URL(fileURLWithPath: "/"))) {
            XCTAssertTrue("\($0)".contains("unknown setting serve.max_body_byte"), "\($0)")
        }
        XCTAssertThrowsError(try d.validate(), "no token for 0.0.0.0")
        XCTAssertThrowsError(try Fixture { $0.host = "0.0.0.0" }, "the service refuses to start")
    }

    func testDocumentKVIsTheStoredContext() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.river)
            let record = try XCTUnwrap(try f.kb.store.document("river"))
            let stored = try f.kb.context(of: (0..<record.windows).map { (record, $0) })

            let r = try await client.get("/v1/documents/river/kv")
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "application/octet-stream")
            let path = f.dir.appendingPathComponent("river.akv").path
            try Data(r.body.readableBytesView).write(to: URL(fileURLWithPath: path))
            let (ctx, metadata) = try KVFile.read(path)
            XCTAssertEqual(ctx, stored, "the download is the stored anchor KV (fp16, positions as encoded)")
            XCTAssertEqual(metadata["document_id"], "river")
            XCTAssertNotNil(metadata["layout"])
            // `anchorkv ask` on the download answers as the store does.
            let decoder = try SACDecoder(model: f.kb.model, adapter: nil)
            let viaFile = try decoder.answer(ctx, question: "Where does the Danube rise?", maxTokens: 6)
            let viaStore = try f.kb.query("Where does the Danube rise?", k: nil, documents: ["river"], maxTokens: 6)
            XCTAssertEqual(viaFile.tokens, viaStore.answerTokens)

            let j = try object(try await client.get("/v1/documents/river/kv?format=json"))
            let kv = try XCTUnwrap(j["kv"] as? [String: Any])
            XCTAssertEqual(kv["positions"] as? [Int], stored.positions.map(Int.init))
            XCTAssertEqual(kv["context_tokens"] as? Int, stored.contextLength)
            XCTAssertEqual(kv["shape"] as? [Int], [stored.anchorCount, stored.kvDim])
            let model = try XCTUnwrap(j["model"] as? [String: Any])
            XCTAssertEqual(model["layers"] as? Int, f.kb.model.config.layerCount)
            XCTAssertEqual(model["kv_dim"] as? Int, f.kb.model.config.kvDim)
            let layers = try XCTUnwrap(j["layers"] as? [[String: String]])
            XCTAssertEqual(layers.count, f.kb.model.config.layerCount)
            let raw = try XCTUnwrap(Data(base64Encoded: layers[3]["values"]!))
            let halves = raw.withUnsafeBytes { Array($0.bindMemory(to: Float16.self)) }
            XCTAssertEqual(halves.map(Float.init), stored.values[3])
            let meta = try object(try await client.get("/v1/documents/river/kv?format=json&data=false"))
            XCTAssertNil(meta["layers"])
            let f32 = try await client.get("/v1/documents/river/kv?dtype=f32")
            XCTAssertGreaterThan(f32.body.readableBytes, r.body.readableBytes)
        }
    }
}

/// The same application over a real loopback socket (HummingbirdTesting's .live framework):
/// HTTP/1.1 framing, streamed SSE bodies, Content-Length limits, keep-alive.
final class LiveSocketTests: XCTestCase {
    func testLiveServerIngestsStreamsAndRefusesOversizeBodies() async throws {
        let f = try Fixture { $0.maxBodyBytes = 64 << 10 }
        try await f.app.test(.live) { client in
            XCTAssertNotNil(client.port)
            let health = try await client.get("/health")
            XCTAssertEqual(health.status, .ok)
            let ingest = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river]])
            XCTAssertEqual(ingest.status, .ok, String(buffer: ingest.body))
            let stream = try await client.post("/v1/query", ["question": "Who decoded the waggle dance?", "k": 1, "max_tokens": 6, "stream": true])
            XCTAssertEqual(stream.status, .ok)
            XCTAssertEqual(stream.headers[.contentType], "text/event-stream; charset=utf-8")
            let text = String(buffer: stream.body)
            XCTAssertTrue(text.hasPrefix("event: token\n") || text.hasPrefix("event: done\n"), text)
            XCTAssertTrue(text.contains("event: done\ndata: {"), text)
            let kv = try await client.get("/v1/documents/bees/kv")
            XCTAssertEqual(kv.status, .ok)
            XCTAssertEqual(kv.headers[.contentLength], String(kv.body.readableBytes))
            // Last: the server may close the connection rather than read a refused body.
            let big = try await client.post("/v1/documents", ["id": "big", "text": String(repeating: "word ", count: 20000)])
            try expectError(big, .contentTooLarge, "payload_too_large")
        }
    }
}
