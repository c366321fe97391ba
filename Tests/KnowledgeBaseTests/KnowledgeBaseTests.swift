import Foundation
import LLM
import SAC
import TestSupport
import XCTest
@testable import KVStore
@testable import KnowledgeBase

/// The store on real RocksDB in temporary folders, with the real default model.
final class KnowledgeBaseTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../tools/demo/corpus").standardized

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-kb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func sample(_ name: String) throws -> SourceDocument {
        let text = try String(contentsOf: Self.corpus.appendingPathComponent(name), encoding: .utf8)
        return SourceDocument(id: name, title: name, text: text, origin: name)
    }

    /// A document of two windows (> 510 tokens): the sample articles one after another.
    func longDocument() throws -> SourceDocument {
        let text = try ["eddystone-lighthouse.md", "danube.md", "printing-press.md"].map { try sample($0).text }.joined(separator: "\n")
        return SourceDocument(id: "long", title: "three articles", text: text, origin: "test")
    }

    func openKB(adapter: SACAdapter? = nil, ratio: Int = 5) throws -> KnowledgeBase {
        let model = try DefaultModel.load()
        let store = try KnowledgeBase.openStore(path: dir.appendingPathComponent("store").path, model: model, create: true)
        return try KnowledgeBase(store: store, model: model, adapter: adapter, ratio: ratio)
    }

    /// Count of keys under a document's number in every per-document family.
    func keyCount(_ store: KVStore, number: UInt64) throws -> Int {
        try ["windows", "kv"].reduce(0) { $0 + (try store.db.keys($1, prefix: KVStore.be64(number)).count) }
    }

    /// The counters kept in the write batches and the number index agree with a scan of the
    /// records after adds, a replace, a compaction and a delete; a store written without them
    /// (an older build) gets both when it is opened.
    func testCountersAndNumberIndexFollowEveryWriteAndAreBuiltForOldStores() throws {
        let kb = try openKB()
        func check(_ what: String, line: UInt = #line) throws {
            let docs = try kb.rocks.documents()
            let t = try kb.rocks.lexStats()
            XCTAssertTrue(t.counted, what, line: line)
            XCTAssertEqual(t.documents, docs.count, what, line: line)
            XCTAssertEqual(t.tokens, docs.reduce(0) { $0 + $1.tokens }, what, line: line)
            XCTAssertEqual(t.anchors, docs.reduce(0) { $0 + $1.anchors }, what, line: line)
            XCTAssertEqual(t.kvBytes, docs.reduce(0) { $0 + $1.kvBytes }, what, line: line)
            XCTAssertEqual(try kb.rocks.db.keys("meta", prefix: Array("num/".utf8)).count, docs.count, what, line: line)
            for d in docs { XCTAssertEqual(try kb.rocks.document(number: d.number), d, what, line: line) }
            let ids = docs.map(\.id)
            XCTAssertEqual(try kb.rocks.documents(limit: 2, offset: 1).map(\.id), Array(ids.dropFirst().prefix(2)), what, line: line)
        }
        try check("empty")
        for name in ["danube.md", "honeybees.md", "printing-press.md"] { _ = try kb.ingest(try sample(name)) }
        try check("three added")
        _ = try kb.ingest(SourceDocument(id: "danube.md", title: "x", text: "The Danube flows into the Black Sea.", origin: "t"))
        try check("one replaced")
        let r = try kb.compact(toRatio: 15, adapter: nil, documents: ["honeybees.md"])
        XCTAssertEqual(r.compacted, ["honeybees.md"])
        try check("one compacted")
        XCTAssertTrue(try kb.rocks.delete("printing-press.md"))
        try check("one deleted")
        let answerBefore = try kb.query("Where does the Danube flow?", k: 2, maxTokens: 6).answer

        // What an older build left: totals without counters, no number index.
        var old = try kb.rocks.lexStats()
        (old.documents, old.tokens, old.anchors, old.kvBytes, old.counted) = (0, 0, 0, 0, false)
        let b = kb.rocks.db.makeBatch()
        b.put("meta", Array("lexstats".utf8), try KVStore.json(old))
        for k in try kb.rocks.db.keys("meta", prefix: Array("num/".utf8)) { b.delete("meta", k) }
        try kb.rocks.db.write(b)
        try kb.rocks.upgradeIndexes()  // what opening the store runs
        try check("upgraded after an older build")
        XCTAssertEqual(try kb.query("Where does the Danube flow?", k: 2, maxTokens: 6).answer, answerBefore)
    }

    func testWholeDocumentQueryEqualsAskOnTheSameContext() throws {
        let model = try DefaultModel.load()
        let adapter = try SACAdapter.random(for: model, ratio: 15, rank: 4)
        let kb = try openKB(adapter: adapter, ratio: 15)
        let doc = try longDocument()
        let outcome = try kb.ingest(doc)
        XCTAssertEqual(outcome.status, .added)
        XCTAssertEqual(outcome.record.windows, 2)

        // What `anchorkv ask` computes: encode the text, decode from the anchor KV (stored as fp16).
        let encoder = try SACEncoder(model: model, mode: .adapter(adapter))
        var ctx = try encoder.compress(text: doc.text)
        ctx.keys = ctx.keys.map { $0.map { Float(Float16($0)) } }
        ctx.values = ctx.values.map { $0.map { Float(Float16($0)) } }
        let stored = try kb.context(of: (0..<2).map { (outcome.record, $0) })
        XCTAssertEqual(stored, ctx, "a whole document read back in order is exactly the encoded context (fp16)")

        let decoder = try SACDecoder(model: model, adapter: adapter)
        let question = "Who built the third Eddystone lighthouse?"
        XCTAssertEqual(try decoder.firstBlockLogits(stored, question: question), try decoder.firstBlockLogits(ctx, question: question))
        let viaStore = try kb.query(question, k: nil, documents: ["long"], maxTokens: 8)
        let viaAsk = try decoder.answer(ctx, question: question, maxTokens: 8)
        XCTAssertEqual(viaStore.answerTokens, viaAsk.tokens)
        XCTAssertEqual(viaStore.citations.map(\.window), [0, 1])
    }

    func testReingestIsANoOpAndChangesReplaceAtomically() throws {
        let kb = try openKB()
        let doc = try sample("honeybees.md")
        let first = try kb.ingest(doc)
        XCTAssertEqual(first.status, .added)
        let statsBefore = try kb.rocks.lexStats()
        let again = try kb.ingest(doc)
        XCTAssertEqual(again.status, .unchanged)
        XCTAssertEqual(again.record, first.record)
        XCTAssertEqual(try kb.rocks.lexStats().windows, statsBefore.windows)

        var changed = doc
        changed.text += "\nHoney bees also collect propolis."
        let replaced = try kb.ingest(changed)
        XCTAssertEqual(replaced.status, .replaced)
        XCTAssertNotEqual(replaced.record.number, first.record.number)
        XCTAssertEqual(try keyCount(kb.rocks, number: first.record.number), 0, "the old version's keys are gone")
        XCTAssertEqual(try kb.rocks.documents().count, 1)
        XCTAssertEqual(try kb.rocks.lexStats().windows, 1)
        XCTAssertTrue(try kb.rocks.postings("propolis").contains { $0.document == replaced.record.number })
    }

    func testDeletionLeavesNoOrphanKeys() throws {
        let kb = try openKB()
        for name in ["honeybees.md", "danube.md"] { _ = try kb.ingest(try sample(name)) }
        _ = try kb.ingest(try longDocument())
        XCTAssertEqual(try kb.rocks.documents().count, 3)
        for id in ["honeybees.md", "danube.md", "long"] { XCTAssertTrue(try kb.rocks.delete(id)) }
        XCTAssertFalse(try kb.rocks.delete("danube.md"))
        for family in ["docs", "windows", "kv", "lex"] {
            XCTAssertEqual(try kb.rocks.db.keys(family, prefix: []).count, 0, "\(family) is empty")
        }
        let stats = try kb.rocks.lexStats()
        XCTAssertEqual(stats.windows, 0)
        XCTAssertEqual(stats.totalLength, 0)
    }

    func testCorruptRecordIsDetectedAndNamed() throws {
        let kb = try openKB()
        let rec = try kb.ingest(try longDocument()).record
        let key = KVStore.kvKey(rec.number, 1, ratio: rec.ratio, layer: 7)
        var bytes = try XCTUnwrap(try kb.rocks.db.get("kv", key))
        bytes[bytes.count / 2] ^= 0x20
        let b = kb.rocks.db.makeBatch()
        b.put("kv", key, bytes)
        try kb.rocks.db.write(b)
        XCTAssertThrowsError(try kb.query("lighthouse", k: nil, documents: ["long"], maxTokens: 2)) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("document 'long' window 1 layer 7") && message.contains("checksum"), message)
        }
    }

    /// Overwrites one stored value directly in RocksDB (what a bad disk sector does).
    func damage(_ store: KVStore, _ family: String, _ key: [UInt8], _ change: (inout [UInt8]) -> Void) throws {
        var bytes = try XCTUnwrap(try store.db.get(family, key), "\(family) key is there")
        change(&bytes)
        let b = store.db.makeBatch()
        b.put(family, key, bytes)
        try store.db.write(b)
    }

    /// The advice in a damaged document's error works: ingesting the same text again finds the
    /// damage (the content hash alone said "unchanged"), encodes it again, and the query answers
    /// exactly as before the damage.
    func testADamagedDocumentIsRepairedByIngestingItAgain() throws {
        let kb = try openKB()
        let doc = try longDocument()
        let first = try kb.ingest(doc).record
        let question = "Who built the third Eddystone lighthouse?"
        let before = try kb.query(question, k: nil, documents: ["long"], maxTokens: 6)
        let lexKeys = try kb.rocks.db.keys("lex", prefix: []).count
        let stats = try kb.rocks.lexStats()
        let t0 = Date()
        XCTAssertEqual(try kb.ingest(doc).status, .unchanged, "a whole document is left alone")
        print(String(format: "checking the stored copy of a %d-token, %d-window document: %.1f ms", first.tokens, first.windows, Date().timeIntervalSince(t0) * 1000))

        try damage(kb.rocks, "kv", KVStore.kvKey(first.number, 1, ratio: first.ratio, layer: 7)) { $0[$0.count / 2] ^= 0x20 }
        XCTAssertThrowsError(try kb.query(question, k: nil, documents: ["long"], maxTokens: 6)) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("document 'long' window 1 layer 7") && message.contains("anchorkv ingest"), message)
        }
        let repaired = try kb.ingest(doc)
        XCTAssertEqual(repaired.status, .repaired)
        XCTAssertTrue(repaired.damage?.contains("window 1 layer 7") ?? false, repaired.damage ?? "no damage reported")
        let after = try kb.query(question, k: nil, documents: ["long"], maxTokens: 6)
        XCTAssertEqual(after.answerTokens, before.answerTokens, "the re-encoded document answers as before")
        XCTAssertEqual(after.anchors, before.anchors)
        XCTAssertEqual(try kb.ingest(doc).status, .unchanged, "once repaired it is whole")
        XCTAssertEqual(try keyCount(kb.rocks, number: first.number), 0, "the damaged version's keys are gone")
        XCTAssertEqual(try kb.rocks.db.keys("lex", prefix: []).count, lexKeys)
        XCTAssertEqual(try kb.rocks.lexStats().windows, stats.windows)
        XCTAssertEqual(try kb.rocks.lexStats().totalLength, stats.totalLength)
    }

    /// A window record that no longer parses, and a lost index posting: both are found, and the
    /// repair deletes every key of the damaged version (the index entries of the unreadable
    /// window are found by the document's number) and keeps the index totals right.
    func testDamagedWindowsAndPostingsAreRepairedWithoutOrphans() throws {
        let kb = try openKB()
        let doc = try longDocument()
        let first = try kb.ingest(doc).record
        let lexKeys = try kb.rocks.db.keys("lex", prefix: []).count
        let stats = try kb.rocks.lexStats()
        let window0 = try kb.rocks.window(first, 0)

        try damage(kb.rocks, "windows", KVStore.windowKey(first.number, 1)) { $0 = Array("{\"tokens\": [1, 2".utf8) }
        XCTAssertThrowsError(try kb.query("lighthouse", k: nil, documents: ["long"], maxTokens: 2)) {
            XCTAssertTrue("\($0)".contains("window 1") && "\($0)".contains("anchorkv ingest"), "\($0)")
        }
        let repaired = try kb.ingest(doc)
        XCTAssertEqual(repaired.status, .repaired)
        XCTAssertTrue(repaired.damage?.contains("window 1: window record is not valid JSON") ?? false, repaired.damage ?? "")
        XCTAssertEqual(try keyCount(kb.rocks, number: first.number), 0)
        XCTAssertEqual(try kb.rocks.db.keys("lex", prefix: []).count, lexKeys, "no posting of the damaged version is left")
        XCTAssertEqual(try kb.rocks.lexStats().windows, stats.windows)
        XCTAssertEqual(try kb.rocks.lexStats().totalLength, stats.totalLength)
        XCTAssertNoThrow(try kb.query("lighthouse", k: nil, documents: ["long"], maxTokens: 2))

        // A posting lost (deleted) from the index.
        let second = try XCTUnwrap(try kb.rocks.document("long"))
        let term = try XCTUnwrap(window0.terms.keys.sorted().first)
        let b = kb.rocks.db.makeBatch()
        b.delete("lex", KVStore.lexKey(term, second.number, 0))
        try kb.rocks.db.write(b)
        let again = try kb.ingest(doc)
        XCTAssertEqual(again.status, .repaired)
        XCTAssertTrue(again.damage?.contains("index entry of term '\(term)'") ?? false, again.damage ?? "")
        XCTAssertEqual(try kb.rocks.db.keys("lex", prefix: []).count, lexKeys)
        XCTAssertTrue(try kb.rocks.postings(term).contains { $0.document == again.record.number && $0.window == 0 })
        XCTAssertEqual(try kb.ingest(doc).status, .unchanged)
    }

    /// A document whose own record (the docs value) is damaged: every query names it with the
    /// advice; re-ingesting it replaces it, and the keys of the lost version (whose number went
    /// with the record) are found as orphans and deleted in the same batch; delete works too.
    func testADamagedDocumentRecordIsRepairedOrDeleted() throws {
        let kb = try openKB()
        let bees = try kb.ingest(try sample("honeybees.md")).record
        let doc = try longDocument()
        let first = try kb.ingest(doc).record
        func counts() throws -> [Int] {
            try ["docs", "windows", "kv", "lex"].map { try kb.rocks.db.keys($0, prefix: []).count } + [try kb.rocks.lexStats().windows, try kb.rocks.lexStats().totalLength]
        }
        let whole = try counts()
        func garble() throws {
            let b = kb.rocks.db.makeBatch()
            b.put("docs", Array("long".utf8), Array("{\"id\": \"long\", \"numb".utf8))
            try kb.rocks.db.write(b)
        }
        try garble()
        XCTAssertThrowsError(try kb.query("Who built the Eddystone lighthouse?", k: 2, maxTokens: 2)) {
            XCTAssertTrue("\($0)".contains("the record of document 'long' is not valid JSON") && "\($0)".contains("anchorkv ingest"), "\($0)")
        }
        // Retrieval reads only the records of the windows it answers from: the other document still answers.
        XCTAssertNoThrow(try kb.query("Who decoded the waggle dance?", k: nil, documents: ["honeybees.md"], maxTokens: 2))
        let repaired = try kb.ingest(doc)
        XCTAssertEqual(repaired.status, .repaired)
        XCTAssertEqual(try counts(), whole, "the lost version's keys are gone, the totals are right")
        XCTAssertEqual(try keyCount(kb.rocks, number: first.number), 0)
        XCTAssertEqual(try keyCount(kb.rocks, number: bees.number), bees.windows * (1 + kb.model.config.layerCount), "the other document is untouched")
        XCTAssertNoThrow(try kb.query("Who decoded the waggle dance of bees?", k: 2, maxTokens: 2))
        XCTAssertEqual(try kb.ingest(doc).status, .unchanged)

        try garble()
        XCTAssertTrue(try kb.rocks.delete("long"))
        XCTAssertEqual(try kb.rocks.documents().map(\.id), ["honeybees.md"])
        XCTAssertEqual(try keyCount(kb.rocks, number: repaired.record.number), 0)
        XCTAssertEqual(try kb.rocks.lexStats().windows, bees.windows)
        XCTAssertNil(try kb.rocks.damage(of: bees))
    }

    /// The adapter a document needs is registered in the document's own batch: a refused
    /// adapter writes nothing, and the first document at a ratio brings its registration.
    func testAdapterRegistrationTravelsWithTheDocument() throws {
        let kb = try openKB()
        func recorded() throws -> [String: String] {
            try JSONDecoder().decode(StoreManifest.self, from: Data(XCTUnwrap(try kb.rocks.db.get("meta", Array("manifest".utf8))))).adapters
        }
        XCTAssertNil(try recorded()["5"], "opening the knowledge base registers nothing")
        let honeybees = try kb.ingest(try sample("honeybees.md")).record
        XCTAssertEqual(try recorded()["5"], "none", "the first document at ratio 5 registered its adapter")
        XCTAssertEqual(kb.rocks.manifest.adapters["5"], "none")
        XCTAssertEqual(try kb.rocks.document("honeybees.md"), honeybees)
        XCTAssertThrowsError(try kb.rocks.checkAdapter(ratio: 5, fingerprint: "another")) {
            XCTAssertTrue("\($0)".contains("made with adapter none"), "\($0)")
        }
    }

    /// A document longer than ingest.max_document_tokens is refused before it is encoded, and one
    /// whose encode runs past ingest.max_document_seconds is stopped; each error names its
    /// setting and nothing of the document is stored (a stored earlier version stays).
    func testIngestBoundsRefuseWithTheSettingsName() throws {
        let kb = try openKB()
        XCTAssertEqual(kb.limits, IngestLimits(maxDocumentTokens: 65536, maxDocumentSeconds: 600))
        let bees = try sample("honeybees.md")
        let stored = try kb.ingest(bees).record
        let digest = try storeDigest(kb.rocks)
        let long = try longDocument()
        kb.limits.maxDocumentTokens = 600
        XCTAssertThrowsError(try kb.ingest(long)) {
            XCTAssertTrue("\($0)".contains("document 'long' has 777 tokens, more than ingest.max_document_tokens (600)"), "\($0)")
        }
        kb.limits = IngestLimits(maxDocumentTokens: 65536, maxDocumentSeconds: 0)
        XCTAssertThrowsError(try kb.ingest(long)) {
            XCTAssertTrue("\($0)".contains("ran past ingest.max_document_seconds (0.0 s)") && "\($0)".contains("after 0 of 2 windows"), "\($0)")
        }
        var changed = bees
        changed.text += "\nBees also make wax."
        XCTAssertThrowsError(try kb.ingest(changed)) { XCTAssertTrue("\($0)".contains("ingest.max_document_seconds"), "\($0)") }
        XCTAssertEqual(try storeDigest(kb.rocks), digest, "a refused document changes nothing")
        XCTAssertEqual(try kb.rocks.document("honeybees.md"), stored)
        kb.limits = IngestLimits(maxDocumentTokens: 777, maxDocumentSeconds: 600)
        XCTAssertEqual(try kb.ingest(long).status, .added, "a document at the bound is taken")
    }

    /// Every key and value of every column family, one after another: equal = unchanged store.
    func storeDigest(_ store: KVStore) throws -> [UInt8] {
        var all: [UInt8] = []
        for f in KVStore.families {
            try store.db.scan(f, prefix: []) { k, v in all += Array(f.utf8) + [UInt8](k) + [UInt8](v); return true }
        }
        return all
    }

    func testRepeatedDocumentIdsCountOnce() throws {
        // A 16 KB body naming one id 1024 times took the server from 0.7 to 3.2 GB.
        let kb = try openKB()
        for name in ["honeybees.md", "danube.md"] { _ = try kb.ingest(try sample(name)) }
        func ids(_ picked: [(DocumentRecord, Int, Double?)]) -> [String] { picked.map { "\($0.0.id)/\($0.1)" } }
        let once = try kb.retrieve("bees", k: nil, documents: ["danube.md", "honeybees.md"])
        let repeated = try kb.retrieve("bees", k: nil, documents: ["danube.md", "honeybees.md", "danube.md"] + Array(repeating: "honeybees.md", count: 1024))
        XCTAssertEqual(ids(repeated), ids(once))
        XCTAssertEqual(Set(once.map(\.0.id)), ["danube.md", "honeybees.md"])
        let a = try kb.query("What do bees make?", k: nil, documents: ["honeybees.md"], maxTokens: 2)
        let b = try kb.query("What do bees make?", k: nil, documents: Array(repeating: "honeybees.md", count: 1024), maxTokens: 2)
        XCTAssertEqual(b.contextTokens, a.contextTokens)
        XCTAssertEqual(b.anchors, a.anchors)
        XCTAssertEqual(b.answerTokens, a.answerTokens)
        XCTAssertEqual(b.citations.count, a.citations.count)
    }

    func testAQueryWhoseWindowsLeaveNoRoomForTheAnswerIsRefusedBeforeItsKVIsRead() throws {
        let kb = try openKB()
        _ = try kb.ingest(try sample("honeybees.md"))
        let limit = kb.model.config.contextLength
        XCTAssertThrowsError(try kb.query("What do bees make?", k: nil, documents: ["honeybees.md"], maxTokens: limit - 10)) { e in
            XCTAssertTrue("\(e)".contains("passes the model's context of \(limit) tokens"), "\(e)")
        }
        XCTAssertNoThrow(try kb.query("What do bees make?", k: nil, documents: ["honeybees.md"], maxTokens: 2))
    }

    func testAStoredRecordOfAnotherShapeIsRefusedBeforeItIsDecoded() throws {
        let kb = try openKB()
        let c = kb.model.config
        // One window of 20 tokens at ratio 5: the uniform rule gives 4 anchors, at 3, 8, 13, 18.
        func put(positions: [Int32]) throws {
            let n = positions.count
            let record = DocumentRecord(id: "forged", title: "forged", source: "test", contentHash: "h\(positions)", ratio: 5, adapter: nil,
                                        windows: 1, tokens: 20, anchors: n, ingestedAt: KVStore.timestamp())
            let window = WindowRecord(tokens: [Int32](repeating: 1, count: 20), text: "forged window", start: 0, terms: ["forged": 1, "window": 1])
            let kv = (0..<c.layerCount).map { _ in
                TensorRecord(positions: positions, keys: [Float](repeating: 0.01, count: n * c.kvDim), values: [Float](repeating: 0.01, count: n * c.kvDim), cols: c.kvDim)
            }
            try kb.rocks.put(DocumentWrite(record: record, windows: [window], kv: [kv]))
        }
        func assertRefused(_ phrase: String, line: UInt = #line) {
            XCTAssertThrowsError(try kb.query("forged", k: nil, documents: ["forged"], maxTokens: 1), line: line) { e in
                guard case StoreError.corruptRecord(let d, 0, _, let why) = e, d == "forged" else { return XCTFail("\(e)", line: line) }
                XCTAssertTrue(why.contains(phrase), why, line: line)
            }
        }
        try put(positions: (0..<9).map { Int32(1 + 2 * $0) })
        assertRefused("the model and the window need 4x\(c.kvDim)")
        try put(positions: [3, 8, 13, 40])
        assertRefused("anchor positions are not ascending inside the window")
        try put(positions: [3, 8, 8, 18])
        assertRefused("anchor positions are not ascending inside the window")
        // The control: the shape and positions the encoder makes answer.
        try put(positions: [3, 8, 13, 18])
        XCTAssertNoThrow(try kb.query("forged", k: nil, documents: ["forged"], maxTokens: 1))
    }

    func testRetrievalFindsTheRightDocument() throws {
        let kb = try openKB()
        for name in ["honeybees.md", "danube.md", "eddystone-lighthouse.md", "printing-press.md"] { _ = try kb.ingest(try sample(name)) }
        let top = try kb.retrieve("Who decoded the waggle dance of bees?", k: 1, documents: nil)
        XCTAssertEqual(top.first?.0.id, "honeybees.md")
        let gutenberg = try kb.retrieve("Gutenberg Bible Mainz", k: 2, documents: nil)
        XCTAssertEqual(gutenberg.first?.0.id, "printing-press.md")
        let r = try kb.query("Where does the Danube begin?", k: 2, maxTokens: 4)
        XCTAssertTrue(r.citations.contains { $0.document == "danube.md" })
        XCTAssertGreaterThan(r.totalSeconds, 0)
    }

    func testAnotherModelCannotOpenTheStore() throws {
        _ = try openKB()
        let tiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../LLMTests/Goldens/tiny-llama").standardized
        let other = try LlamaModel.load(path: tiny.path)
        XCTAssertThrowsError(try KnowledgeBase.openStore(path: dir.appendingPathComponent("store").path, model: other, create: false)) {
            guard case StoreError.modelMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try KnowledgeBase.openStore(path: dir.appendingPathComponent("nothing").path, model: other, create: false)) {
            guard case StoreError.notAStore = $0 else { return XCTFail("\($0)") }
        }
    }

    func testBadInputsAreSkippedWithReasons() throws {
        let files = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        try Data("   \n".utf8).write(to: files.appendingPathComponent("empty.txt"))
        try Data([0x66, 0x6f, 0xff, 0xfe, 0x20]).write(to: files.appendingPathComponent("latin.txt"))
        try Data([0x00, 0x01, 0x02]).write(to: files.appendingPathComponent("blob.bin"))
        try Data("fine text".utf8).write(to: files.appendingPathComponent("ok.md"))
        try Data("{\"id\":\"a\",\"text\":\"alpha\"}\nnot json\n{\"id\":\"b\"}\n{\"id\":\"c\",\"text\":\"\"}\n".utf8).write(to: files.appendingPathComponent("d.jsonl"))
        let (docs, skipped) = DocumentSource.read(paths: [files.path])
        XCTAssertEqual(docs.map(\.id).sorted(), ["a", "ok.md"])
        let reasons = skipped.map(\.reason).joined(separator: "|")
        for want in ["empty document", "not valid UTF-8", "binary file", "not a JSON object", "no \"text\""] {
            XCTAssertTrue(reasons.contains(want), "\(want) in \(reasons)")
        }
    }
}

extension KnowledgeBase {
    /// The embedded RocksDB store these tests build on (its keys, batches and upgrades).
    var rocks: KVStore { store as! KVStore }
}
