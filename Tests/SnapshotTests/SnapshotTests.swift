import Digest
import Foundation
import KnowledgeBase
import LLM
import TestSupport
import XCTest
@testable import KVStore
@testable import Snapshots

/// Snapshot files on real RocksDB stores: the round trip, and every way a file can be bad.
/// Most cases use synthetic stores (seeded random KV written through KVStore.put): what a
/// snapshot moves is bytes, so no model run is needed to test it.
final class SnapshotTests: TemporaryFolderTestCase {
    /// A store of `docs` documents with seeded random KV: `windows` windows of `rows` anchors,
    /// `layers` layers of 192 columns.
    func syntheticStore(_ name: String, fingerprint: String = "synthetic-model", docs: Int, windows: Int = 2, rows: Int = 34,
                        layers: Int = 4, seed: UInt64 = 1, idPrefix: String = "doc") throws -> KVStore {
        try SnapshotTestsSupport.syntheticStore(path: path(name), fingerprint: fingerprint, docs: docs, windows: windows, rows: rows,
                                                layers: layers, seed: seed, idPrefix: idPrefix)
    }

    /// sha256 over every key and value of every column family: equal digests = unchanged store.
    func contentDigest(_ store: KVStore) throws -> String { try SnapshotTestsSupport.contentDigest(store) }

    func exportAll(_ store: KVStore, _ name: String) throws -> String {
        let file = path(name)
        _ = try SnapshotExporter.export(store: store, to: file)
        return file
    }

    /// Asserts every document of `a` is in `b` with identical record (but the internal number),
    /// windows and tensor bytes.
    func assertSameDocuments(_ a: KVStore, _ b: KVStore, file: StaticString = #filePath, line: UInt = #line) throws {
        let da = try a.documents(), db = try b.documents()
        XCTAssertEqual(Set(da.map(\.id)), Set(db.map(\.id)), file: file, line: line)
        for x in da {
            guard let y = try b.document(x.id) else { continue }
            var xr = x, yr = y
            xr.number = 0; yr.number = 0
            XCTAssertEqual(xr, yr, "record of \(x.id)", file: file, line: line)
            let layers = try a.layerCount(of: x)
            XCTAssertEqual(try b.layerCount(of: y), layers, file: file, line: line)
            for w in 0..<x.windows {
                XCTAssertEqual(try a.window(x, w), try b.window(y, w), file: file, line: line)
                for l in 0..<layers { XCTAssertEqual(try a.rawKV(x, window: w, layer: l), try b.rawKV(y, window: w, layer: l), file: file, line: line) }
            }
        }
        XCTAssertEqual(try a.lexStats().windows, try b.lexStats().windows, file: file, line: line)
    }

    // MARK: round trip

    func testRoundTripIntoAnEmptyStoreGivesIdenticalTensorsAndAnswers() throws {
        let model = try DefaultModel.load()
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../tools/demo/corpus").standardized
        let source = try KnowledgeBase.openStore(path: path("a"), model: model, create: true)
        let kbA = try KnowledgeBase(store: source, model: model, adapter: nil, ratio: 5)
        for name in ["danube.md", "honeybees.md"] {
            let text = try String(contentsOf: corpus.appendingPathComponent(name), encoding: .utf8)
            _ = try kbA.ingest(SourceDocument(id: name, title: name, text: text, origin: name))
        }
        let file = try exportAll(source, "a.akvs")
        let manifest = try SnapshotReader.manifest(path: file)
        XCTAssertEqual(manifest.documents, 2)
        XCTAssertEqual(manifest.layers, model.config.layerCount)
        XCTAssertEqual(manifest.modelFingerprint, try model.fingerprint())
        XCTAssertEqual(manifest.adapters, ["5": "none"])

        let target = try KnowledgeBase.openStore(path: path("b"), model: model, create: true)
        let report = try SnapshotImporter.importSnapshot(from: file, into: target)
        XCTAssertEqual(Set(report.added), ["danube.md", "honeybees.md"])
        try assertSameDocuments(source, target)
        let kbB = try KnowledgeBase(store: target, model: model, adapter: nil, ratio: 5)
        for (q, doc) in [("How long is the Danube?", "danube.md"), ("What do bees make?", "honeybees.md")] {
            let a = try kbA.query(q, k: nil, documents: [doc], maxTokens: 8)
            let b = try kbB.query(q, k: nil, documents: [doc], maxTokens: 8)
            XCTAssertEqual(a.answerTokens, b.answerTokens, "same answer from the imported store")
            XCTAssertFalse(a.answerTokens.isEmpty)
        }
        // BM25 retrieval sees the imported documents too.
        XCTAssertEqual(try kbB.retrieve("Danube river", k: 1, documents: nil).first?.0.id, "danube.md")
    }

    func testExportOfChosenDocumentsAndImportTwiceIsANoOp() throws {
        let src = try syntheticStore("src", docs: 5)
        let file = path("some.akvs")
        let r = try SnapshotExporter.export(store: src, documents: ["doc-1", "doc-3"], to: file)
        XCTAssertEqual(r.manifest.documents, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file + ".partial"))
        XCTAssertThrowsError(try SnapshotExporter.export(store: src, documents: ["nope"], to: path("x.akvs")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.akvs")))

        let dst = try syntheticStore("dst", docs: 1, idPrefix: "other")
        let first = try SnapshotImporter.importSnapshot(from: file, into: dst)
        XCTAssertEqual(Set(first.added), ["doc-1", "doc-3"])
        let digest = try contentDigest(dst)
        let second = try SnapshotImporter.importSnapshot(from: file, into: dst)
        XCTAssertEqual(Set(second.unchanged), ["doc-1", "doc-3"])
        XCTAssertTrue(second.added.isEmpty)
        XCTAssertEqual(try contentDigest(dst), digest, "importing the same snapshot twice changes nothing")
        XCTAssertEqual(try dst.documents().count, 3)
        XCTAssertEqual(try dst.lexStats().windows, 6)
    }

    func testConflictPolicies() throws {
        let src = try syntheticStore("src", docs: 3, seed: 1)
        let file = try exportAll(src, "s.akvs")
        // The target holds doc-0 and doc-1 with other content (seed 2 -> other hashes and tensors).
        let dst = try syntheticStore("dst", docs: 2, seed: 2)
        let before = try contentDigest(dst)
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: file, into: dst)) { e in
            guard case SnapshotError.conflict(let ids) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(Set(ids), ["doc-0", "doc-1"])
            XCTAssertTrue("\(e)".contains("--on-conflict") && "\(e)".contains("?on_conflict="))
        }
        XCTAssertEqual(try contentDigest(dst), before, "a refused import changes nothing")

        let skip = try SnapshotImporter.importSnapshot(from: file, into: dst, onConflict: .skip)
        XCTAssertEqual(Set(skip.skipped), ["doc-0", "doc-1"])
        XCTAssertEqual(skip.added, ["doc-2"])
        XCTAssertEqual(try dst.document("doc-0")?.contentHash, "hash-0-2", "skip keeps the store's version")

        let replace = try SnapshotImporter.importSnapshot(from: file, into: dst, onConflict: .replace)
        XCTAssertEqual(Set(replace.replaced), ["doc-0", "doc-1"])
        XCTAssertEqual(Set(replace.unchanged), ["doc-2"])
        try assertSameDocuments(src, dst)
        XCTAssertEqual(try dst.db.keys("kv", prefix: []).count, 3 * 2 * 4, "replaced documents left no old KV behind")
    }

    /// Importing a snapshot that holds a document is a repair that works: the store's copy has
    /// the same content hash (so it used to be "unchanged" and stayed damaged), but its records
    /// fail their checks, so the snapshot's copy replaces it, with any --on-conflict.
    func testImportRepairsADamagedDocumentOfTheSameContent() throws {
        let src = try syntheticStore("src", docs: 3, seed: 1)
        let file = try exportAll(src, "s.akvs")
        // The same documents (same seed: same hashes and tensors), stored before shapes were recorded.
        let dst = try syntheticStore("dst", docs: 3, seed: 1)
        XCTAssertNil(dst.manifest.shape)
        let doc0 = try XCTUnwrap(try dst.document("doc-0"))
        let key = KVStore.kvKey(doc0.number, 0, ratio: doc0.ratio, layer: 0)
        var bytes = try XCTUnwrap(try dst.db.get("kv", key))
        bytes[bytes.count - 9] ^= 0x01
        let b = dst.db.makeBatch()
        b.put("kv", key, bytes)
        try dst.db.write(b)
        XCTAssertThrowsError(try dst.loadKV(doc0, window: 0, layers: 4)) {
            XCTAssertTrue("\($0)".contains("anchorkv import"), "the advice names import: \($0)")
        }

        let report = try SnapshotImporter.importSnapshot(from: file, into: dst)
        XCTAssertEqual(report.repaired, ["doc-0"])
        XCTAssertEqual(Set(report.unchanged), ["doc-1", "doc-2"])
        XCTAssertTrue(report.replaced.isEmpty && report.added.isEmpty)
        // doc-0 is now the snapshot's copy, bit for bit (the other two are the store's own,
        // written a moment apart from the source's, so their ingest times may differ).
        var want = try XCTUnwrap(try src.document("doc-0")), got = try XCTUnwrap(try dst.document("doc-0"))
        want.number = 0; got.number = 0
        XCTAssertEqual(got, want)
        let srcDoc = try XCTUnwrap(try src.document("doc-0")), dstDoc = try XCTUnwrap(try dst.document("doc-0"))
        for w in 0..<2 {
            XCTAssertEqual(try dst.window(dstDoc, w), try src.window(srcDoc, w))
            for l in 0..<4 { XCTAssertEqual(try dst.rawKV(dstDoc, window: w, layer: l), try src.rawKV(srcDoc, window: w, layer: l)) }
        }
        XCTAssertNil(try dst.damage(of: dstDoc))
        XCTAssertEqual(try dst.db.keys("kv", prefix: []).count, 3 * 2 * 4, "the damaged copy left no KV behind")
        XCTAssertEqual(try dst.db.keys("windows", prefix: []).count, 3 * 2)
        XCTAssertEqual(try dst.db.keys("lex", prefix: []).count, try src.db.keys("lex", prefix: []).count)
        let digest = try contentDigest(dst)
        let again = try SnapshotImporter.importSnapshot(from: file, into: dst, onConflict: .skip)
        XCTAssertEqual(Set(again.unchanged), ["doc-0", "doc-1", "doc-2"])
        XCTAssertEqual(try contentDigest(dst), digest, "a whole store is left alone")

        // A document record that cannot be read: the snapshot's copy replaces it, and the keys
        // of the lost version (its number went with the record) are swept in the same batch.
        let g = dst.db.makeBatch()
        g.put("docs", Array("doc-1".utf8), Array("{not json".utf8))
        try dst.db.write(g)
        XCTAssertThrowsError(try dst.documents()) { XCTAssertTrue("\($0)".contains("the record of document 'doc-1' is not valid JSON"), "\($0)") }
        let third = try SnapshotImporter.importSnapshot(from: file, into: dst)
        XCTAssertEqual(third.repaired, ["doc-1"])
        XCTAssertEqual(Set(try dst.documents().map(\.id)), ["doc-0", "doc-1", "doc-2"])
        XCTAssertEqual(try dst.db.keys("kv", prefix: []).count, 3 * 2 * 4)
        XCTAssertEqual(try dst.db.keys("windows", prefix: []).count, 3 * 2)
        XCTAssertEqual(try dst.db.keys("lex", prefix: []).count, try src.db.keys("lex", prefix: []).count)
        XCTAssertEqual(try dst.lexStats().windows, 6)
        XCTAssertEqual(try dst.lexStats().totalLength, try src.lexStats().totalLength)
    }

    // MARK: bad files

    func testTruncatedFilesAreRejectedAndTheStoreIsUnchanged() throws {
        let file = try exportAll(try syntheticStore("src", docs: 2), "s.akvs")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let dst = try syntheticStore("dst", docs: 1, idPrefix: "other")
        let before = try contentDigest(dst)
        for cut in [0, 7, 16, 40, bytes.count / 3, bytes.count / 2, bytes.count - 60, bytes.count - 1] {
            let bad = path("cut-\(cut).akvs")
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: bad))
            XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: bad, into: dst), "cut at \(cut)") { e in
                let text = "\(e)"
                XCTAssertTrue(text.contains("truncated") || text.contains("not an AnchorKV snapshot"), "cut at \(cut): \(text)")
            }
            XCTAssertEqual(try contentDigest(dst), before)
        }
    }

    func testFlippedBytesAreRejectedAndTheStoreIsUnchanged() throws {
        let file = try exportAll(try syntheticStore("src", docs: 2), "s.akvs")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let dst = try syntheticStore("dst", docs: 1, idPrefix: "other")
        let before = try contentDigest(dst)
        // Header version, manifest JSON, a document frame, deep inside tensor payloads, the trailer.
        var offsets = [9, 30, 200, bytes.count / 2, bytes.count / 2 + 1001, bytes.count - 30]
        if let r = bytes.range(of: Data("doc-1".utf8)) { offsets.append(r.lowerBound + 2) }
        for at in offsets {
            var bad = bytes
            bad[at] ^= 0x10
            let p = path("flip-\(at).akvs")
            try bad.write(to: URL(fileURLWithPath: p))
            XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: p, into: dst), "flip at \(at)") { e in
                XCTAssertTrue(e is SnapshotError, "flip at \(at): \(e)")
            }
            XCTAssertThrowsError(try SnapshotReader.read(path: p))
            XCTAssertEqual(try contentDigest(dst), before)
        }
        XCTAssertNoThrow(try SnapshotReader.read(path: file), "the original still verifies")
    }

    func testWrongModelWrongVersionAndForeignFiles() throws {
        let file = try exportAll(try syntheticStore("src", docs: 1), "s.akvs")
        let other = try syntheticStore("other", fingerprint: "another-model", docs: 1, idPrefix: "o")
        let before = try contentDigest(other)
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: file, into: other)) { e in
            guard case SnapshotError.modelMismatch = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try contentDigest(other), before)

        var v2 = try Data(contentsOf: URL(fileURLWithPath: file))
        v2[8] = 2
        try v2.write(to: URL(fileURLWithPath: path("v2.akvs")))
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: path("v2.akvs"), into: other)) { e in
            XCTAssertEqual(e as? SnapshotError, .unsupportedVersion(path: path("v2.akvs"), version: 2))
        }
        try Data("{\"id\": \"not a snapshot\"}\n".utf8).write(to: URL(fileURLWithPath: path("foreign.jsonl")))
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: path("foreign.jsonl"), into: other)) { e in
            XCTAssertEqual(e as? SnapshotError, .notASnapshot(path: path("foreign.jsonl")))
        }
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: path("missing.akvs"), into: other)) { e in
            guard case SnapshotError.unreadable = e else { return XCTFail("\(e)") }
        }
        // A store that already holds ratio 15 with another adapter refuses the snapshot's.
        let mixed = try KVStore(path: path("mixed"), modelFingerprint: "synthetic-model", modelName: "synthetic", create: true)
        try mixed.registerAdapter(ratio: 15, fingerprint: "a-different-adapter")
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: file, into: mixed))
        XCTAssertEqual(try mixed.documents().count, 0)
        XCTAssertEqual(try contentDigest(other), before)
    }
}

/// Seeded generator for synthetic tensors.
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() % 20001) / 10000 - 1 }
}
