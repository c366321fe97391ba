import AnchorKVCore
import Foundation
import Hummingbird
import HummingbirdTesting
import SAC
import TestSupport
import XCTest

/// The service with the trained adapters as the product configures them (config/adapters):
/// documents are encoded with the r=5 adapter, answered with its [LM], compacted to r=15 with
/// the configured r=15 adapter and still answered after it, all through HTTP.
final class AdapterRouteTests: XCTestCase {
    func testTheConfiguredAdaptersEncodeAnswerAndCompact() async throws {
        let f = try Fixture(adapters: true)
        let r5 = try SACAdapter.load(path: Fixture.repository.appendingPathComponent("config/adapters/smollm2-135m-sac-r5.safetensors").path, for: f.kb.model)
        let r15 = try SACAdapter.load(path: Fixture.repository.appendingPathComponent("config/adapters/smollm2-135m-sac-r15.safetensors").path, for: f.kb.model)
        XCTAssertEqual(f.core.adapterFingerprint, r5.fingerprint)
        try await f.app.test(.router) { client in
            let ingest = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river]])
            XCTAssertEqual(ingest.status, .ok, String(buffer: ingest.body))
            XCTAssertEqual(try object(ingest)["adapter"] as? String, r5.fingerprint)
            XCTAssertEqual(f.kb.store.manifest.adapters["5"], r5.fingerprint)
            XCTAssertEqual(try f.kb.store.document("bees")?.adapter, r5.fingerprint)

            let stats = try object(try await client.get("/v1/stats"))
            XCTAssertEqual((stats["ingest"] as? [String: Any])?["adapter"] as? String, r5.fingerprint)
            XCTAssertEqual((stats["ingest"] as? [String: Any])?["window"] as? Int, r5.layout.window)

            // The answer over HTTP is the core's (and so the engine's) answer with the adapter.
            let question = "Who decoded the waggle dance?"
            let q = try await client.post("/v1/query", ["question": question, "documents": ["bees"], "max_tokens": 12])
            XCTAssertEqual(q.status, .ok, String(buffer: q.body))
            let direct = try f.kb.query(question, k: nil, documents: ["bees"], maxTokens: 12)
            XCTAssertEqual(try object(q)["answer"] as? String, direct.answer)

            let job = try await finished(client, try await client.post("/v1/compact", ["to_ratio": 15, "documents": ["river"]]))
            XCTAssertEqual(job["state"] as? String, "succeeded", "\(job)")
            XCTAssertEqual((job["result"] as? [String: Any])?["adapter"] as? String, r15.fingerprint)
            let river = try XCTUnwrap(try f.kb.store.document("river"))
            XCTAssertEqual(river.ratio, 15)
            XCTAssertEqual(river.adapter, r15.fingerprint)
            XCTAssertEqual(f.kb.store.manifest.adapters["15"], r15.fingerprint)
            let after = try await client.post("/v1/query", ["question": "Where does the Danube rise?", "documents": ["river"], "max_tokens": 6])
            XCTAssertEqual(after.status, .ok, String(buffer: after.body))
            XCTAssertEqual(try object(after)["ratio"] as? Int, 15, "the ratio of the KV answered from")
            // A training-free compaction of the same ratio is refused: r=15 is held with the adapter.
            let clash = try await finished(client, try await client.post("/v1/compact", ["to_ratio": 15, "no_adapter": true, "documents": ["bees"]]))
            XCTAssertEqual(clash["state"] as? String, "failed", "\(clash)")
        }
    }
}
