import Digest
import Foundation
import KnowledgeBase
import LLM
import TestSupport
import XCTest
@testable import KVStore
@testable import Snapshots

/// kill -9 of the real binary during import and during compaction, and queries running while a
/// compaction swaps documents: each ends with a consistent store and nothing lost.
final class FaultTests: TemporaryFolderTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
    static let corpus = root.appendingPathComponent("tools/demo/corpus")

    /// Missing or stale: a failure under tools/test.sh (ANCHORKV_REQUIRE_MODEL=1), else a skip with the reason.
    func binary() throws -> URL { try CLIBinary.url() }

    /// Starts the CLI, kills it with SIGKILL after `delay` seconds, or once a line of its stderr
    /// contains `stderrMarker` (if still running); returns whether it was killed and its stdout.
    func runAndKill(_ args: [String], after delay: Double, stderrMarker: String? = nil) throws -> (killed: Bool, stdout: String) {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = args
        p.currentDirectoryURL = Self.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = stderrMarker == nil ? FileHandle.nullDevice : err
        try p.run()
        if let marker = stderrMarker {
            var seen = Data()
            while p.isRunning {
                let chunk = err.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen.append(chunk)
                if String(decoding: seen, as: UTF8.self).contains(marker) { break }
            }
        }
        let deadline = Date().addingTimeInterval(delay)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        let killed = p.isRunning
        if killed { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return (killed, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// Every document whole: its windows, exactly `layers` KV records per window at its own
    /// ratio (none at another), anchors matching the records; index totals match.
    func assertConsistent(_ store: KVStore, layers: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        var windows = 0
        for d in try store.documents() {
            var anchors = 0
            for w in 0..<d.windows {
                _ = try store.window(d, w)
                let kv = try store.loadKV(d, window: w, layers: layers)
                anchors += kv[0].rows
            }
            XCTAssertEqual(anchors, d.anchors, "anchors of \(d.id)", file: file, line: line)
            XCTAssertEqual(try store.db.keys("kv", prefix: KVStore.be64(d.number)).count, d.windows * layers,
                           "\(d.id) holds only its own ratio's KV", file: file, line: line)
            windows += d.windows
        }
        XCTAssertEqual(try store.lexStats().windows, windows, file: file, line: line)
        XCTAssertEqual(try store.db.keys("windows", prefix: []).count, windows, "no window without its document", file: file, line: line)
        XCTAssertEqual(try store.db.keys("kv", prefix: []).count, windows * layers, "no orphaned KV", file: file, line: line)
    }

    func testKillDuringImportLeavesAllOrNothing() throws {
        _ = try binary()
        // 24 documents x 2 windows x 30 layers of 34 anchors: a ~38 MB snapshot.
        let snapshot = path("big.akvs")
        do {
            let src = try SnapshotTestsSupport.syntheticStore(path: path("src"), docs: 24, windows: 2, rows: 34, layers: 30)
            _ = try SnapshotExporter.export(store: src, to: snapshot)
        }
        func freshStore(_ i: Int) throws -> String {
            let storePath = path("dst-\(i)")
            _ = try SnapshotTestsSupport.syntheticStore(path: storePath, docs: 2, windows: 1, rows: 34, layers: 30, idPrefix: "keep")
            return storePath
        }
        // Kills during verification (by time), and during the write itself (after the
        // importer announces it on stderr).
        var outcomes: [String] = []
        let plans: [(String?, Double)] = [(nil, 0.3), (nil, 0.6), ("writing", 0), ("writing", 0.01), ("writing", 0.03), ("writing", 0.1), (nil, 120)]
        for (i, plan) in plans.enumerated() {
            let storePath = try freshStore(i)
            let (killed, _) = try runAndKill(["import", "--store", storePath, snapshot], after: plan.1, stderrMarker: plan.0)
            let store = try KVStore(path: storePath, modelFingerprint: "synthetic-model", modelName: nil, create: false)
            let ids = Set(try store.documents().map(\.id))
            XCTAssertTrue(ids.isSuperset(of: ["keep-0", "keep-1"]), "the store's own documents survive")
            let imported = ids.subtracting(["keep-0", "keep-1"]).count
            XCTAssertTrue(imported == 0 || imported == 24, "all or nothing, got \(imported) of 24 after kill plan \(plan)")
            try assertConsistent(store, layers: 30)
            outcomes.append("\(plan.0 ?? "start") +\(plan.1) s: \(killed ? "killed" : "finished"), \(imported) imported")
            if !killed { XCTAssertEqual(imported, 24, "a finished import imported everything") }
        }
        XCTAssertTrue(outcomes.contains { $0.contains("killed") }, "at least one kill landed mid-import: \(outcomes)")
        print("kill during import: " + outcomes.joined(separator: "; "))
    }

    /// Short real documents at ratio 5 (training-free anchors), for compaction.
    func ingestSmallDocuments(_ kb: KnowledgeBase, count: Int) throws {
        let texts = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted().map {
            try String(contentsOf: Self.corpus.appendingPathComponent($0), encoding: .utf8)
        }
        for i in 0..<count {
            let text = String(texts[i % texts.count].prefix(300)) + "\nCopy \(i)."
            _ = try kb.ingest(SourceDocument(id: "doc-\(i)", title: "doc \(i)", text: text, origin: "test"))
        }
    }

    func testKillDuringCompactionThenRerunFinishes() throws {
        _ = try binary()
        let model = try DefaultModel.load()
        let layers = model.config.layerCount
        let storePath = path("store")
        do {
            let store = try KnowledgeBase.openStore(path: storePath, model: model, create: true)
            try ingestSmallDocuments(try KnowledgeBase(store: store, model: model, adapter: nil, ratio: 5), count: 8)
        }
        // Kill as soon as it reports the third document done (progress lines go to stderr, one per
        // document): a fast machine finished the other five within a 0.3 s grace, and the kill missed.
        let (killed, _) = try runAndKill(["compact", "--store", storePath, "--to-ratio", "15", "--no-adapter"], after: 0,
                                         stderrMarker: " 3/8 docs")
        var doneBefore = 0
        do {
            let store = try KnowledgeBase.openStore(path: storePath, model: model, create: false)
            let docs = try store.documents()
            XCTAssertEqual(docs.count, 8, "no document lost")
            for d in docs { XCTAssertTrue(d.ratio == 5 || d.ratio == 15, "\(d.id) at ratio \(d.ratio)") }
            doneBefore = docs.filter { $0.ratio == 15 }.count
            try assertConsistent(store, layers: layers)
            print("kill during compaction: \(killed ? "killed" : "finished") with \(doneBefore) of 8 at ratio 15")
        }
        // Rerun: continues where it stopped.
        let p = Process()
        p.executableURL = try binary()
        p.arguments = ["compact", "--store", storePath, "--to-ratio", "15", "--no-adapter", "--json"]
        p.currentDirectoryURL = Self.root
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let report = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual((report["already_done"] as! [String]).count, doneBefore, "the rerun skips what the killed run finished")
        XCTAssertEqual((report["compacted"] as! [String]).count, 8 - doneBefore)
        let store = try KnowledgeBase.openStore(path: storePath, model: model, create: false)
        XCTAssertEqual(try store.documents().filter { $0.ratio == 15 }.count, 8)
        try assertConsistent(store, layers: layers)
        // The byte counts cover the documents this run re-encoded: fewer after, or none to count.
        if doneBefore < 8 {
            XCTAssertLessThan(report["kv_bytes_after"] as! Int, report["kv_bytes_before"] as! Int)
        } else {
            XCTAssertEqual(report["kv_bytes_before"] as! Int, 0)
            XCTAssertEqual(report["kv_bytes_after"] as! Int, 0)
        }
    }

    func testQueriesKeepWorkingDuringCompaction() throws {
        let model = try DefaultModel.load()
        let store = try KnowledgeBase.openStore(path: path("store"), model: model, create: true)
        let kb = try KnowledgeBase(store: store, model: model, adapter: nil, ratio: 5)
        try ingestSmallDocuments(kb, count: 4)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var compactError: Error?
        nonisolated(unsafe) var report: CompactionReport?
        DispatchQueue.global().async {
            do { report = try kb.compact(toRatio: 15, adapter: nil) } catch { compactError = error }
            done.signal()
        }
        var queries = 0, ratiosSeen = Set<Int>()
        repeat {
            for i in 0..<4 {
                let r = try kb.query("What is this about?", k: nil, documents: ["doc-\(i)"], maxTokens: 2)
                XCTAssertEqual(r.citations.count, 1)
                ratiosSeen.insert(r.anchors * 10 > r.contextTokens ? 5 : 15)
                queries += 1
            }
        } while done.wait(timeout: .now()) == .timedOut
        XCTAssertNil(compactError)
        XCTAssertEqual(report?.compacted.count, 4)
        XCTAssertEqual(try store.documents().filter { $0.ratio == 15 }.count, 4)
        _ = try kb.query("What is this about?", k: nil, documents: ["doc-0"], maxTokens: 2)
        try assertConsistent(store, layers: model.config.layerCount)
        print("queries during compaction: \(queries), contexts seen at ratios \(ratiosSeen.sorted())")
    }
}

/// A test case with a fresh temporary folder per test (`dir`, files in it by `path(_:)`),
/// removed afterwards; shared by the snapshot test classes.
class TemporaryFolderTestCase: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        try super.setUpWithError()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-\(Self.self)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
        try super.tearDownWithError()
    }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
}

/// Synthetic stores shared by the snapshot test files.
enum SnapshotTestsSupport {
    /// sha256 over every key and value of every column family: equal digests = unchanged store.
    static func contentDigest(_ store: KVStore) throws -> String {
        var h = SHA256()
        for f in KVStore.families {
            h.update(f)
            try store.db.scan(f, prefix: []) { k, v in h.update(k); h.update(v); return true }
        }
        return h.finalize().hexString
    }

    static func syntheticStore(path: String, fingerprint: String = "synthetic-model", docs: Int, windows: Int, rows: Int, layers: Int,
                               seed: UInt64 = 1, idPrefix: String = "doc") throws -> KVStore {
        let store = try KVStore(path: path, modelFingerprint: fingerprint, modelName: "synthetic", create: true)
        try store.registerAdapter(ratio: 15, fingerprint: "adapter-r15")
        var rng = SplitMix(seed)
        for d in 0..<docs {
            var wins: [WindowRecord] = [], kv: [[TensorRecord]] = []
            for w in 0..<windows {
                let text = "window \(w) of document \(d) about rivers and lighthouses number \(rng.next() % 1000)"
                wins.append(WindowRecord(tokens: (0..<510).map { _ in Int32(rng.next() % 49152) }, text: text, start: w * 510,
                                         terms: LexicalAnalyzer.terms(text)))
                kv.append((0..<layers).map { _ in
                    TensorRecord(positions: (0..<rows).map { Int32(w * 510 + 7 + 15 * $0) },
                                 keys: (0..<(rows * 192)).map { _ in rng.float() }, values: (0..<(rows * 192)).map { _ in rng.float() }, cols: 192)
                })
            }
            let record = DocumentRecord(id: "\(idPrefix)-\(d)", title: "Document \(d)", source: "test", contentHash: "hash-\(d)-\(seed)",
                                        ratio: 15, adapter: "adapter-r15", windows: windows, tokens: windows * 510, anchors: windows * rows,
                                        ingestedAt: KVStore.timestamp())
            try store.put(DocumentWrite(record: record, windows: wins, kv: kv))
        }
        return store
    }
}
