import AnchorKVCore
import Foundation
import Hummingbird
import HummingbirdTesting
import KVStore
import KnowledgeBase
import NIOCore
import Snapshots
import XCTest
@testable import HTTPService

/// POST /v1/snapshots, POST /v1/snapshots/import and POST /v1/compact, in process.
/// Polls a job until it finishes.
func finished(_ client: some TestClientProtocol, _ response: TestResponse) async throws -> [String: Any] {
        XCTAssertEqual(response.status, .accepted, String(buffer: response.body))
        let id = try XCTUnwrap((try object(response)["job"] as? [String: Any])?["id"] as? String)
        for _ in 0..<1200 {
            let s = try object(try await client.get("/v1/jobs/\(id)"))
            if ["succeeded", "failed", "cancelled"].contains(s["state"] as? String ?? "") { return s }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTFail("job \(id) did not finish")
        return [:]
}

final class SnapshotRouteTests: XCTestCase {

    func testExportThenImportIntoAnotherStoreGivesTheSameDocumentsAndAnswers() async throws {
        let a = try Fixture(), b = try Fixture()
        @Sendable func question() -> [String: Any] { ["question": "Where does the Danube rise?", "k": 1, "max_tokens": 8] }
        let (snapshot, answerA) = try await a.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river, Docs.press]])
            let answerA = try object(try await client.post("/v1/query", question()))["answer"] as? String
            let r = try await client.execute(uri: "/v1/snapshots", method: .post)
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
            XCTAssertEqual(r.headers[.contentType], "application/octet-stream")
            XCTAssertTrue(r.headers[.contentDisposition]?.contains(".akvs") == true)
            XCTAssertEqual(r.headers[.contentLength], String(r.body.readableBytes))
            // Some documents only; unknown ids are a 404 and write nothing.
            let part = try await client.post("/v1/snapshots", ["documents": ["river"]])
            let path = a.dir.appendingPathComponent("part.akvs").path
            try Data(part.body.readableBytesView).write(to: URL(fileURLWithPath: path))
            XCTAssertEqual(try SnapshotReader.read(path: path).documents, 1)
            try expectError(try await client.post("/v1/snapshots", ["documents": ["river", "nope"]]), .notFound, "not_found")
            try expectError(try await client.post("/v1/snapshots", ["documents": []]), .badRequest, "invalid_input")
            return (r.body, answerA)
        }
        let file = a.dir.appendingPathComponent("all.akvs").path
        try Data(snapshot.readableBytesView).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(try SnapshotReader.read(path: file).documents, 3, "the download is a whole, verified snapshot")

        try await b.app.test(.router) { client in
            let r = try await client.execute(uri: "/v1/snapshots/import", method: .post, body: snapshot)
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
            let o = try object(r)
            XCTAssertEqual((o["added"] as? [String])?.sorted(), ["bees", "press", "river"])
            XCTAssertEqual((o["snapshot"] as? [String: Any])?["documents"] as? Int, 3)
            let answerB = try object(try await client.post("/v1/query", question()))["answer"] as? String
            XCTAssertEqual(answerB, answerA)
            let again = try object(try await client.execute(uri: "/v1/snapshots/import", method: .post, body: snapshot))
            XCTAssertEqual((again["unchanged"] as? [String])?.count, 3, "importing twice changes nothing")

            // A document the store holds with other text: conflict by default, then skip or replace.
            var changed = Docs.river
            changed["text"] = "The Danube is a long river."
            _ = try await client.post("/v1/documents", changed)
            try expectError(try await client.execute(uri: "/v1/snapshots/import", method: .post, body: snapshot), .conflict, "conflict")
            let skip = try object(try await client.execute(uri: "/v1/snapshots/import?on_conflict=skip", method: .post, body: snapshot))
            XCTAssertEqual(skip["skipped"] as? [String], ["river"])
            let replace = try await client.execute(uri: "/v1/snapshots/import?on_conflict=replace&async=true", method: .post, body: snapshot)
            let job = try await finished(client, replace)
            XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
            XCTAssertEqual((job["result"] as? [String: Any])?["replaced"] as? [String], ["river"])
        }
        XCTAssertEqual(try b.kb.store.documents().map(\.contentHash).sorted(), try a.kb.store.documents().map(\.contentHash).sorted())
    }

    func testBadSnapshotUploadsAre4xxAndChangeNothing() async throws {
        let f = try Fixture { $0.maxSnapshotBytes = 4 << 20 }
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.bees)
            let good = try await client.execute(uri: "/v1/snapshots", method: .post)
            XCTAssertEqual(good.status, .ok)
            let before = try f.kb.store.documents()
            var truncated = good.body
            truncated.moveWriterIndex(to: good.body.readableBytes / 2)
            var flipped = good.body
            let at = good.body.readableBytes - 100
            flipped.setInteger(flipped.getInteger(at: at, as: UInt8.self)! ^ 0x40, at: at)
            for (body, code) in [(ByteBuffer(string: "not a snapshot at all"), "invalid_snapshot"), (truncated, "invalid_snapshot"),
                                 (flipped, "invalid_snapshot"), (ByteBuffer(), "invalid_input")] {
                try expectError(try await client.execute(uri: "/v1/snapshots/import", method: .post, body: body), .badRequest, code)
            }
            try expectError(try await client.execute(uri: "/v1/snapshots/import?on_conflict=merge", method: .post, body: good.body), .badRequest, "invalid_input")
            try expectError(try await client.execute(uri: "/v1/snapshots/import?async=maybe", method: .post, body: good.body), .badRequest, "invalid_input")
            let big = ByteBuffer(repeating: 0x41, count: (4 << 20) + 1)
            try expectError(try await client.execute(uri: "/v1/snapshots/import", method: .post, body: big), .contentTooLarge, "payload_too_large")
            XCTAssertEqual(try f.kb.store.documents(), before)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)
                .filter { $0.hasPrefix("anchorkv-import-") || $0.hasPrefix("anchorkv-export-") }
            XCTAssertEqual(leftovers, [], "uploads and exports leave no temporary files")
        }
    }

    func testCompactionIsAJobThatReencodesAtTheNewRatio() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river]])
            let before = try XCTUnwrap(try f.kb.store.document("river"))
            try expectError(try await client.post("/v1/compact", ["no_adapter": true]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/compact", ["to_ratio": 15]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/compact", ["to_ratio": 15, "no_adapter": true, "older_than": "last week"]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/compact", ["to_ratio": 15, "no_adapter": true, "documents": ["nope"]]), .notFound, "not_found")

            let job = try await finished(client, try await client.post("/v1/compact", ["to_ratio": 15, "no_adapter": true]))
            XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
            let result = try XCTUnwrap(job["result"] as? [String: Any])
            XCTAssertEqual((result["compacted"] as? [String])?.sorted(), ["bees", "river"])
            XCTAssertEqual(result["to_ratio"] as? Int, 15)
            XCTAssertLessThan(result["kv_bytes_after"] as? Int ?? .max, result["kv_bytes_before"] as? Int ?? 0)
            XCTAssertEqual((job["progress"] as? [String: Any])?["fraction"] as? Double, 1)
            let after = try XCTUnwrap(try f.kb.store.document("river"))
            XCTAssertEqual(after.ratio, 15)
            XCTAssertLessThan(after.anchors, before.anchors)
            let q = try await client.post("/v1/query", ["question": "Where does the Danube rise?", "k": 1, "max_tokens": 4])
            XCTAssertEqual(q.status, .ok, String(buffer: q.body))

            // A rerun has nothing left to do.
            let rerun = try await finished(client, try await client.post("/v1/compact", ["to_ratio": 15, "no_adapter": true, "older_than": "0s"]))
            XCTAssertEqual(((rerun["result"] as? [String: Any])?["already_done"] as? [String])?.sorted(), ["bees", "river"])
        }
    }
}
