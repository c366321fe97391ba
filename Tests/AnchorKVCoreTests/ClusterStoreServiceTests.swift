@testable import AnchorKVCore
import Foundation
import KnowledgeBase
import RedisCluster
import RedisTestSupport
import TestSupport
import XCTest

/// The application on a Redis Cluster store (a 3+3 cluster of the test's own on loopback):
/// the same ingest, answers, document list, statistics, deletion and compaction as on a folder,
/// and a second service on the same cluster (another query node) answering alike.
final class ClusterStoreServiceTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    static func config(store: String) -> AppConfig {
        var c = AppConfig(root: Self.repository)
        c.storePath = store
        for r in [5, 15] { c.sacAdapters[r] = Self.repository.appendingPathComponent("config/adapters/smollm2-135m-sac-r\(r).safetensors").path }
        return c
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent("tools/demo/corpus/\(name)"), encoding: .utf8)
    }

    func testTheClusterStoreAnswersAsTheFolderStore() async throws {
        let cluster = try await LocalRedisCluster()
        let url = "redis://" + cluster.seeds.prefix(2).map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/kb-test"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("akv-cluster-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (folderConfig, clusterConfig) = (Self.config(store: folder.path), Self.config(store: url))
        try await onThread {
            let model = try DefaultModel.load()
            let docs = [
                SourceDocument(id: "bees", title: "Honey bees", text: try Self.text("honeybees.md"), origin: "test"),
                SourceDocument(id: "river", title: "The Danube", text: try Self.text("danube.md"), origin: "test"),
                SourceDocument(id: "press", title: "Printing press",
                               text: "Johannes Gutenberg built a printing press with movable metal type in Mainz around 1450.", origin: "test"),
            ]
            let a = try KnowledgeService.open(config: folderConfig, .init(create: true, adapter: AdapterChoice(ratio: 5)), model: model)
            let b = try KnowledgeService.open(config: clusterConfig, .init(create: true, adapter: AdapterChoice(ratio: 5)), model: model)
            XCTAssertEqual(b.storePath, url)
            XCTAssertEqual(a.ingest(docs).items.map(\.status), [.added, .added, .added])
            XCTAssertEqual(b.ingest(docs).items.map(\.status), [.added, .added, .added])
            XCTAssertEqual(b.ingest([docs[0]]).items.map(\.status), [.unchanged], "unchanged text is checked whole and skipped")

            typealias Q = KnowledgeService.Question
            let questions: [Q] = [
                Q("Who decoded the waggle dance?", maxTokens: 12),
                Q("Where does the Danube rise?", k: 2, maxTokens: 12),
                Q("Who built a printing press?", documents: ["press"], maxTokens: 8),
                Q("What do honey bees live in?", documents: ["bees", "press"], maxTokens: 6),
            ]
            func same(_ x: KnowledgeService, _ y: KnowledgeService, _ what: String, _ questions: [Q] = questions) throws {
                for q in questions {
                    let (p, r) = (try x.query(q), try y.query(q))
                    XCTAssertEqual(p.answer, r.answer, "\(what): \(q.text)")
                    XCTAssertEqual(p.citations.map { "\($0.document)/\($0.window)" }, r.citations.map { "\($0.document)/\($0.window)" }, "\(what): \(q.text)")
                    XCTAssertEqual(p.anchors, r.anchors)
                }
                // The same documents (each store keeps its own ingest times).
                func list(_ s: KnowledgeService) throws -> [String] {
                    try s.documents().documents.map { "\($0.id) \($0.title) r\($0.ratio) \($0.adapter) \($0.windows) \($0.tokens) \($0.anchors) \($0.kvBytes)" }
                }
                XCTAssertEqual(try list(x), try list(y), what)
                let (s, t) = (try x.stats(), try y.stats())
                XCTAssertEqual([s.documents, s.windows, s.tokens, s.anchors, s.kvBytes], [t.documents, t.windows, t.tokens, t.anchors, t.kvBytes], what)
            }
            try same(a, b, "folder vs cluster")
            // Another query node on the same cluster: nothing of the knowledge base is local.
            let c = try KnowledgeService.open(config: clusterConfig, .init(adapter: AdapterChoice(ratio: 5)), model: model)
            try same(b, c, "two nodes on one cluster")

            // Delete and compaction behave alike.
            XCTAssertNoThrow(try a.delete("press"))
            XCTAssertNoThrow(try b.delete("press"))
            XCTAssertThrowsError(try b.delete("press"))
            let ca = try a.compact(toRatio: 15, documents: ["river"]), cb = try b.compact(toRatio: 15, documents: ["river"])
            XCTAssertEqual(ca.compacted, ["river"])
            XCTAssertEqual(cb.compacted, ["river"])
            XCTAssertEqual(ca.kvBytesAfter, cb.kvBytesAfter)
            let riverA = try a.query(Q("How long is the Danube?", documents: ["river"], maxTokens: 10))
            let riverB = try b.query(Q("How long is the Danube?", documents: ["river"], maxTokens: 10))
            XCTAssertEqual(riverA.ratio, 15)
            XCTAssertEqual(riverA.answer, riverB.answer)
            XCTAssertEqual(riverA.ratio, riverB.ratio)
            try same(a, b, "after delete and compaction", questions.filter { !($0.documents ?? []).contains("press") })

            // A snapshot moves a knowledge base between the two: cluster -> folder, folder -> cluster.
            let fromCluster = folder.appendingPathComponent("from-cluster.akvs").path
            let exported = try b.export(documents: nil, to: fromCluster)
            XCTAssertEqual(exported.snapshot.documents, 2)
            let imported = try KnowledgeService.importSnapshot(config: Self.config(store: folder.appendingPathComponent("copy").path), file: fromCluster)
            XCTAssertEqual(imported.added.sorted(), ["bees", "river"])
            let copy = try KnowledgeService.open(config: Self.config(store: folder.appendingPathComponent("copy").path), .init(adapter: AdapterChoice(ratio: 5)), model: model)
            let remaining = questions.filter { !($0.documents ?? []).contains("press") }
            try same(b, copy, "cluster -> snapshot -> folder", remaining)
            let fromFolder = folder.appendingPathComponent("from-folder.akvs").path
            _ = try a.export(documents: nil, to: fromFolder)
            let second = url.replacingOccurrences(of: "/kb-test", with: "/kb-copy")
            let back = try KnowledgeService.importSnapshot(config: Self.config(store: second), file: fromFolder)
            XCTAssertEqual(back.added.sorted(), ["bees", "river"])
            XCTAssertEqual(back.store, second)
            let d = try KnowledgeService.open(config: Self.config(store: second), .init(adapter: AdapterChoice(ratio: 5)), model: model)
            try same(a, d, "folder -> snapshot -> cluster", remaining)
            // Importing it again changes nothing; a bad file changes nothing either.
            let again = try KnowledgeService.importSnapshot(config: Self.config(store: second), file: fromFolder)
            XCTAssertEqual(again.unchanged.sorted(), ["bees", "river"])
            var bytes = try Data(contentsOf: URL(fileURLWithPath: fromFolder))
            bytes[bytes.count / 2] ^= 0xFF
            let damaged = folder.appendingPathComponent("damaged.akvs").path
            try bytes.write(to: URL(fileURLWithPath: damaged))
            XCTAssertThrowsError(try KnowledgeService.importSnapshot(config: Self.config(store: second), file: damaged, onConflict: .replace))
            try same(a, d, "after a damaged import", remaining)
        }
    }
}
