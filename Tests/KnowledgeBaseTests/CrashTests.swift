import Foundation
import LLM
import TestSupport
import XCTest
@testable import KVStore
@testable import KnowledgeBase

/// kill -9 of a real `anchorkv ingest` in the middle: on reopen, every acknowledged document
/// is there and every document there is whole.
final class CrashTests: XCTestCase {
    /// The binary the fault tests drive: missing or older than a source file fails under
    /// tools/test.sh (require) and skips otherwise, with the reason; a fresh one is used.
    func testAMissingOrStaleBinaryFailsWithAMessageWhenRequired() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-bin-\(UUID().uuidString)")
        let sources = dir.appendingPathComponent("Sources/X")
        try FileManager.default.createDirectory(at: sources, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let binary = dir.appendingPathComponent("anchorkv"), source = sources.appendingPathComponent("a.swift")
        func outcome(require: Bool) -> String {
            do { return "ok \(try CLIBinary.check(binary: binary, sources: dir.appendingPathComponent("Sources"), require: require).lastPathComponent)" } catch let e as XCTSkip {
                return "skip \(e.message ?? "")"
            } catch { return "fail \(error)" }
        }
        try Data("x".utf8).write(to: source)
        XCTAssertTrue(outcome(require: true).hasPrefix("fail \(binary.path) is missing: build the CLI first (swift build --product anchorkv"), outcome(require: true))
        XCTAssertTrue(outcome(require: false).hasPrefix("skip \(binary.path) is missing"), outcome(require: false))
        try Data("#!/bin/sh\n".utf8).write(to: binary)
        try FileManager.default.setAttributes([.posixPermissions: 0o755, .modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: binary.path)
        XCTAssertTrue(outcome(require: true).hasPrefix("fail \(binary.path) is older than \(source.path)"), outcome(require: true))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -120)], ofItemAtPath: source.path)
        XCTAssertEqual(outcome(require: true), "ok anchorkv")
    }

    /// The repair advice, followed on the real binary: a KV record damaged on disk makes
    /// `anchorkv query` fail with an error naming the document and `anchorkv ingest`; running
    /// that ingest again reports the document `repaired`, and the query answers again.
    func testTheCLIRepairAdviceWorks() throws {
        let model = try DefaultModel.load()
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-repair-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let doc = dir.appendingPathComponent("bees.md")
        try "Honey bees live in colonies with one queen. Karl von Frisch decoded the waggle dance.".write(to: doc, atomically: true, encoding: .utf8)
        let storePath = dir.appendingPathComponent("store").path
        func run(_ args: [String]) throws -> (status: Int32, out: String, err: String, crashed: Bool) {
            try runCLI(binary, args + ["--store", storePath, "--no-adapter", "--ratio", "5"])
        }
        let query = ["query", "Who decoded the waggle dance?", "--doc", "bees.md", "--max-tokens", "4"]
        let first = try run(["ingest", doc.path])
        XCTAssertEqual(first.status, 0, first.err)
        XCTAssertTrue(first.out.hasPrefix("added\tbees.md"), first.out)
        let answer = try run(query)
        XCTAssertEqual(answer.status, 0, answer.err)
        do {  // damage one KV record through RocksDB (the CLI has exited, so the store is free)
            let store = try KnowledgeBase.openStore(path: storePath, model: model, create: false)
            let d = try XCTUnwrap(try store.document("bees.md"))
            let key = KVStore.kvKey(d.number, 0, ratio: d.ratio, layer: 3)
            var bytes = try XCTUnwrap(try store.db.get("kv", key))
            bytes[bytes.count - 5] ^= 0x40
            let b = store.db.makeBatch()
            b.put("kv", key, bytes)
            try store.db.write(b)
        }
        let broken = try run(query)
        XCTAssertNotEqual(broken.status, 0)
        XCTAssertTrue(broken.err.contains("document 'bees.md' window 0 layer 3") && broken.err.contains("anchorkv ingest"), broken.err)
        let repair = try run(["ingest", doc.path])
        XCTAssertEqual(repair.status, 0, repair.err)
        XCTAssertTrue(repair.out.hasPrefix("repaired\tbees.md"), repair.out)
        XCTAssertTrue(repair.err.contains("1 repaired"), repair.err)
        let again = try run(query)
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertEqual(again.out, answer.out, "the repaired document answers as before")
    }

    /// `anchorkv ingest` reads the per-document bounds from the config file's "ingest" object:
    /// a document over max_document_tokens fails naming the setting (exit 1, nothing stored);
    /// an invalid value is a config error.
    func testTheCLITakesIngestBoundsFromTheConfigFile() throws {
        _ = try DefaultModel.load()
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-bounds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let doc = dir.appendingPathComponent("bees.md")
        try "Honey bees live in colonies with one queen and many workers.".write(to: doc, atomically: true, encoding: .utf8)
        func run(_ ingest: Any) throws -> (Int32, String) {
            let cfg: [String: Any] = ["model": LlamaModel.defaultModelPath(), "store": dir.appendingPathComponent("store").path, "ingest": ingest]
            let file = dir.appendingPathComponent("config/anchorkv.json")
            try JSONSerialization.data(withJSONObject: cfg).write(to: file)
            let r = try runCLI(binary, ["ingest", "--config", file.path, "--no-adapter", "--ratio", "5", doc.path])
            return (r.status, r.err)
        }
        let (status, text) = try run(["max_document_tokens": 8])
        XCTAssertEqual(status, 1, text)
        XCTAssertTrue(text.contains("more than ingest.max_document_tokens (8)"), text)
        let (bad, badText) = try run(["max_document_tokens": -3])
        XCTAssertNotEqual(bad, 0)
        XCTAssertTrue(badText.contains("ingest.max_document_tokens must be a positive integer"), badText)
        let (ok, okText) = try run(["max_document_tokens": 4096, "max_document_seconds": 120])
        XCTAssertEqual(ok, 0, okText)
        XCTAssertTrue(okText.contains("1 added"), okText)
    }

    /// `anchorkv ingest` of a missing path, or of a folder with no document, exits 1; a readable
    /// document next to a missing path is stored, and the run still exits 1.
    func testIngestOfNothingOrOfAMissingPathFails() throws {
        _ = try DefaultModel.load()
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-exit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("empty"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let doc = dir.appendingPathComponent("bees.md")
        try "Honey bees live in colonies with one queen and many workers.".write(to: doc, atomically: true, encoding: .utf8)
        func ingest(_ paths: [String]) throws -> (Int32, String) {
            let r = try runCLI(binary, ["ingest", "--store", dir.appendingPathComponent("store").path, "--no-adapter", "--ratio", "5"] + paths)
            return (r.status, r.err)
        }
        let missing = dir.appendingPathComponent("no-such-file.md").path
        let (s1, t1) = try ingest([missing])
        XCTAssertEqual(s1, 1, t1)
        XCTAssertTrue(t1.contains("no document found"), t1)
        let (s2, t2) = try ingest([dir.appendingPathComponent("empty").path])
        XCTAssertEqual(s2, 1, t2)
        let (s3, t3) = try ingest([doc.path, missing])
        XCTAssertEqual(s3, 1, t3)
        XCTAssertTrue(t3.contains("1 added"), t3)
        let (s4, t4) = try ingest([doc.path])
        XCTAssertEqual(s4, 0, t4)
        XCTAssertTrue(t4.contains("1 unchanged"), t4)
    }

    func testKilledIngestLeavesOnlyWholeDocuments() throws {
        let model = try DefaultModel.load()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let corpus = root.appendingPathComponent("tools/demo/corpus")
        let texts = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted().map {
            try String(contentsOf: corpus.appendingPathComponent($0), encoding: .utf8)
        }
        var lines: [String] = []
        for i in 0..<24 {
            let obj: [String: Any] = ["id": "doc-\(i)", "text": texts[i % texts.count] + "\nCopy \(i)."]
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self))
        }
        let input = dir.appendingPathComponent("docs.jsonl")
        try lines.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let storePath = dir.appendingPathComponent("store").path

        let p = Process()
        p.executableURL = binary
        p.arguments = ["ingest", "--store", storePath, "--no-adapter", "--ratio", "5", input.path]
        p.currentDirectoryURL = root
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait for three acknowledged documents, then kill -9 while it works on the next.
        var acknowledged: [String] = []
        var buffer = Data()
        let deadline = Date().addingTimeInterval(240)
        while acknowledged.count < 3 && Date() < deadline && p.isRunning {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            acknowledged = String(decoding: buffer, as: UTF8.self).split(separator: "\n").compactMap {
                let f = $0.split(separator: "\t")
                return f.count > 1 && f[0] == "added" ? String(f[1]) : nil
            }
        }
        Thread.sleep(forTimeInterval: 0.15)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        buffer.append(out.fileHandleForReading.readDataToEndOfFile())
        acknowledged = String(decoding: buffer, as: UTF8.self).split(separator: "\n").compactMap {
            let f = $0.split(separator: "\t")
            return f.count > 1 && f[0] == "added" ? String(f[1]) : nil
        }
        XCTAssertGreaterThanOrEqual(acknowledged.count, 3)
        XCTAssertLessThan(acknowledged.count, 24, "the kill came before the end")

        let store = try KnowledgeBase.openStore(path: storePath, model: model, create: false)
        let docs = try store.documents()
        let ids = Set(docs.map(\.id))
        for id in acknowledged { XCTAssertTrue(ids.contains(id), "acknowledged \(id) survived") }
        var windows = 0
        for d in docs {
            for w in 0..<d.windows {
                _ = try store.window(d, w)
                let kv = try store.loadKV(d, window: w, layers: model.config.layerCount)
                XCTAssertEqual(kv.count, model.config.layerCount)
            }
            windows += d.windows
            XCTAssertEqual(try store.db.keys("kv", prefix: KVStore.be64(d.number)).count, d.windows * model.config.layerCount)
        }
        XCTAssertEqual(try store.lexStats().windows, windows, "index statistics match the documents")
        XCTAssertEqual(try store.db.keys("windows", prefix: []).count, windows, "no window without its document")
    }
}
