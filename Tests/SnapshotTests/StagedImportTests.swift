import Digest
import Foundation
import XCTest
@testable import KVStore
@testable import Snapshots

/// Imports in bounded memory (StagedWrite): each document goes to disk when it is verified,
/// where no reader reaches it; one final batch makes them all visible, and anything that stops
/// the import before that batch leaves the store byte for byte as it was.
final class StagedImportTests: TemporaryFolderTestCase {
    /// A snapshot of 3 synthetic documents, read back as the importer sees them, and a store holding one other.
    func fixture() throws -> (docs: [EncodedDocument], snapshot: String, store: KVStore) {
        let snapshot = path("three.akvs")
        do {
            let src = try SnapshotTestsSupport.syntheticStore(path: path("src"), docs: 3, windows: 2, rows: 34, layers: 4)
            _ = try SnapshotExporter.export(store: src, to: snapshot)
        }
        var docs: [EncodedDocument] = []
        _ = try SnapshotReader.read(path: snapshot) { docs.append($0) }
        let store = try SnapshotTestsSupport.syntheticStore(path: path("dst"), docs: 1, windows: 1, rows: 34, layers: 4, seed: 9, idPrefix: "keep")
        return (docs, snapshot, store)
    }

    func testStagedDocumentsStayInvisibleUntilTheCommitAndAnAbandonLeavesNoTrace() throws {
        let (docs, _, store) = try fixture()
        let before = try SnapshotTestsSupport.contentDigest(store)
        let statsBefore = try store.stats()
        let staged = store.beginStagedWrite()
        for d in docs { try staged.add(d) }
        XCTAssertEqual(try store.documents().map(\.id), ["keep-0"], "staged documents are not listed")
        XCTAssertEqual(try store.postings("rivers").count, 1, "nor found by the index")
        XCTAssertEqual(try store.stats().documents, statsBefore.documents, "nor counted")
        XCTAssertEqual(try store.db.keys("kv", prefix: []).count, 4 + 3 * 2 * 4, "but their KV is on disk already")
        staged.abandon()
        XCTAssertEqual(try SnapshotTestsSupport.contentDigest(store), before, "an abandoned write leaves the store byte for byte as it was")

        let again = store.beginStagedWrite()
        for d in docs { try again.add(d) }
        let stored = try again.commit(adapters: ["15": "adapter-r15"])
        XCTAssertEqual(Set(try store.documents().map(\.id)), ["keep-0", "doc-0", "doc-1", "doc-2"])
        XCTAssertEqual(Set(stored.map(\.number)).count, 3, "each document its own number")
        for d in try store.documents() {
            for w in 0..<d.windows { XCTAssertEqual(try store.loadKV(d, window: w, layers: 4).count, 4) }
        }
        XCTAssertEqual(try store.stats().documents, 4)
        XCTAssertEqual(try store.db.keys("meta", prefix: KVStore.stagingPrefix).count, 0, "no staging marker left")
        // A later write takes a number past the committed ones.
        let next = try SnapshotTestsSupport.syntheticStore(path: path("more"), docs: 1, windows: 1, rows: 34, layers: 4, seed: 5, idPrefix: "late")
        var late: [EncodedDocument] = []
        _ = try SnapshotExporter.export(store: next, to: path("late.akvs"))
        _ = try SnapshotReader.read(path: path("late.akvs")) { late.append($0) }
        let lateRecord = try store.putEncoded(late, adapters: [:])[0]
        XCTAssertGreaterThan(lateRecord.number, stored.map(\.number).max()!)
    }

    func testARefusedImportLeavesTheStoreByteForByteAfterStagingEveryOtherDocument() throws {
        let (_, snapshot, _) = try fixture()
        // The store holds doc-2 with other content: with the default policy that is a conflict,
        // found only after doc-0 and doc-1 were staged.
        let store = try SnapshotTestsSupport.syntheticStore(path: path("conflict"), docs: 3, windows: 2, rows: 34, layers: 4, seed: 2)
        let before = try SnapshotTestsSupport.contentDigest(store)
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: snapshot, into: store)) { e in
            guard case SnapshotError.conflict = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try SnapshotTestsSupport.contentDigest(store), before)
        // And the same import with replace goes through whole.
        let report = try SnapshotImporter.importSnapshot(from: snapshot, into: store, onConflict: .replace)
        XCTAssertEqual(report.replaced.count, 3)
        XCTAssertEqual(try store.db.keys("kv", prefix: []).count, 3 * 2 * 4, "the replaced versions' KV is gone")
    }

    func testWhatACrashLeftStagedIsDeletedWhenTheStoreIsNextOpened() throws {
        var (docs, _, store): ([EncodedDocument], String, KVStore?) = try fixture()
        let storePath = store!.path
        let before = try SnapshotTestsSupport.contentDigest(store!)
        // A crash between staging and the commit leaves the markers and records on disk.
        do {
            let staged = store!.beginStagedWrite()
            for d in docs { try staged.add(d) }
            XCTAssertEqual(try store!.db.keys("meta", prefix: KVStore.stagingPrefix).count, 3)
            staged.detach()
        }
        docs = []
        store = nil
        let reopened = try KVStore(path: storePath, modelFingerprint: "synthetic-model", modelName: nil, create: false)
        XCTAssertEqual(try SnapshotTestsSupport.contentDigest(reopened), before)
    }
}
