import Foundation
import KVStore
import SAC
import Snapshots
import TestSupport
import XCTest
@testable import AnchorKVCore

/// The layered configuration: defaults < file < environment < flags, strict about every key.
final class AppConfigTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config"), withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ obj: Any) throws -> String {
        let file = dir.appendingPathComponent("config/anchorkv.json")
        try JSONSerialization.data(withJSONObject: obj).write(to: file)
        return file.path
    }

    func testEachLayerOverridesTheOneBelow() throws {
        let file = try write(["model": "m.gguf", "threads": 3, "store": "kb", "sac": ["ratio": 15, "adapters": ["15": "a15.safetensors"]],
                              "serve": ["port": 9000], "generate": ["max_tokens": 7]])
        let defaults = AppConfig()
        XCTAssertEqual(defaults.sacRatio, 5)
        XCTAssertEqual(defaults.serve.port, 8080)

        let fromFile = try AppConfig.load(.init(configPath: file), environment: [:])
        XCTAssertEqual(fromFile.model, dir.appendingPathComponent("m.gguf").path, "relative to the folder holding config/")
        XCTAssertEqual(fromFile.threads, 3)
        XCTAssertEqual(fromFile.storePath, dir.appendingPathComponent("kb").path)
        XCTAssertEqual(fromFile.sacRatio, 15)
        XCTAssertEqual(fromFile.sacAdapters[15], dir.appendingPathComponent("a15.safetensors").path)
        XCTAssertEqual(fromFile.serve.port, 9000)
        XCTAssertEqual(fromFile.maxTokens, 7)
        XCTAssertEqual(fromFile.answerMaxTokens, 64, "unset keys keep their defaults")

        let env = ["ANCHORKV_THREADS": "5", "ANCHORKV_STORE": "/env/store", "ANCHORKV_PORT": "9100", "ANCHORKV_MODEL": "/env/m.gguf"]
        let fromEnv = try AppConfig.load(.init(configPath: file), environment: env)
        XCTAssertEqual(fromEnv.threads, 5)
        XCTAssertEqual(fromEnv.storePath, "/env/store")
        XCTAssertEqual(fromEnv.serve.port, 9100)
        XCTAssertEqual(fromEnv.model, "/env/m.gguf")

        let fromFlags = try AppConfig.load(.init(configPath: file, model: "/flag/m.gguf", threads: 7, store: "/flag/store"), environment: env)
        XCTAssertEqual(fromFlags.threads, 7)
        XCTAssertEqual(fromFlags.storePath, "/flag/store")
        XCTAssertEqual(fromFlags.model, "/flag/m.gguf")

        // $ANCHORKV_CONFIG names the file when no flag does.
        XCTAssertEqual(try AppConfig.load(environment: ["ANCHORKV_CONFIG": file]).sacRatio, 15)
    }

    func testUnknownOrWronglyTypedSettingsAreErrorsThatNameThem() throws {
        let cases: [(Any, String)] = [
            (["threds": 2], "unknown setting threds"),
            (["threads": true], "threads must be an integer"),
            (["threads": 1.5], "threads must be an integer"),
            (["model": 3], "model must be a string"),
            (["sac": ["ratio": "5"]], "sac.ratio must be an integer"),
            (["sac": ["ratio": 0]], "sac.ratio must be a positive integer"),
            (["sac": ["adapter": ["5": "x"]]], "unknown setting sac.adapter"),
            (["sac": ["adapters": ["five": "x"]]], "sac.adapters key 'five' is not a ratio"),
            (["sac": ["adapters": ["5": 5]]], "sac.adapters.5 must be a string"),
            (["generate": ["temperature": "hot"]], "generate.temperature must be a number"),
            (["generate": ["top_p": 1.5]], "generate.top_p must be in (0, 1]"),
            (["ingest": ["max_document_tokens": -3]], "ingest.max_document_tokens must be a positive integer"),
            (["ingest": 5], "ingest must be an object"),
            (["serve": ["prot": 1]], "unknown setting serve.prot"),
            (["serve": ["port": "80"]], "serve.port must be an integer"),
            (["serve": ["port": true]], "serve.port must be an integer"),
        ]
        for (obj, message) in cases {
            let file = try write(obj)
            XCTAssertThrowsError(try AppConfig.load(.init(configPath: file), environment: [:]), message) {
                guard let e = $0 as? CoreError else { return XCTFail("\($0)") }
                XCTAssertEqual(e.kind, .invalidConfig, message)
                XCTAssertEqual(e.exitCode, 1)
                XCTAssertTrue(e.message.contains(message), "\(e.message) should contain \(message)")
            }
        }
        let file = try write([:])
        XCTAssertThrowsError(try AppConfig.load(.init(configPath: file), environment: ["ANCHORKV_PORT": "eighty"])) {
            XCTAssertTrue("\($0)".contains("ANCHORKV_PORT must be an integer"), "\($0)")
        }
        XCTAssertThrowsError(try AppConfig.load(.init(configPath: dir.appendingPathComponent("nope.json").path), environment: [:])) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
    }
}

/// Engine errors become the application's kinds by their case, and each kind has its exit status.
final class CoreErrorTests: XCTestCase {
    func testEngineErrorsMapByCase() {
        let cases: [(any Error, CoreError.Kind, Int32)] = [
            (StoreError.invalidInput("x"), .invalidInput, 1),
            (StoreError.notAStore(path: "/s"), .notFound, 2),
            (StoreError.modelMismatch(path: "/s", store: "a", model: "b"), .modelMismatch, 3),
            (StoreError.adapterConflict(ratio: 5, stored: "a", requested: "b"), .conflict, 3),
            (StoreError.missingRecord(document: "d", window: 0, layer: 1, what: "KV record"), .corrupt, 1),
            (StoreError.database(path: "/s", message: "io"), .internalError, 1),
            (SACError.adapterMismatch(expected: "a", found: "b"), .modelMismatch, 3),
            (SACError.deadlinePassed(windowsDone: 1, windows: 3), .timeout, 4),
            (SnapshotError.truncated(path: "f", offset: 3), .invalidSnapshot, 1),
            (SnapshotError.conflict(ids: ["a"]), .conflict, 3),
            (CancellationError(), .unavailable, 4),
        ]
        for (error, kind, code) in cases {
            let e = CoreError.from(error)
            XCTAssertEqual(e.kind, kind, "\(error)")
            XCTAssertEqual(e.exitCode, code, "\(error)")
            XCTAssertFalse(e.message.isEmpty)
        }
        XCTAssertEqual(CoreError.from(StoreError.missingRecord(document: "d", window: 2, layer: nil, what: "window record")).message,
                       StoreError.corruptRecord(document: "d", window: 2, layer: nil, reason: "window record is missing").description)
        XCTAssertEqual(Results.json(CoreError.noDocument("x")), #"{"code":"not_found","message":"no document 'x' in the store"}"#)
    }
}

/// The product binary from any folder: it finds its checkout's config and model through its own
/// path, and exits with the documented statuses.
final class RunFromAnyFolderTests: XCTestCase {
    func testTheCLIRunsOutsideTheRepositoryWithDocumentedExitCodes() throws {
        _ = try DefaultModel.load()
        let binary = try CLIBinary.url()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-anywhere-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "Honey bees live in colonies with one queen.".write(to: dir.appendingPathComponent("bees.md"), atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        for k in ["ANCHORKV_CONFIG", "ANCHORKV_MODEL", "ANCHORKV_STORE"] { env[k] = nil }
        let store = dir.appendingPathComponent("store").path
        let ingest = try runCLI(binary, ["ingest", "--store", store, "--no-adapter", "--ratio", "5", "bees.md"], in: dir, environment: env)
        XCTAssertEqual(ingest.status, 0, ingest.err)
        XCTAssertTrue(ingest.out.hasPrefix("added\tbees.md"), ingest.out)
        let show = try runCLI(binary, ["docs", "show", "--store", store, "wasps.md"], in: dir, environment: env)
        XCTAssertEqual(show.status, 2, "not found: \(show.err)")
        XCTAssertTrue(show.err.contains("error: no document 'wasps.md' in the store"), show.err)
        let noStore = try runCLI(binary, ["stats", "--store", dir.appendingPathComponent("none").path], in: dir, environment: env)
        XCTAssertEqual(noStore.status, 2, noStore.err)
        let usage = try runCLI(binary, ["query", "--store", store, "-k", "0", "bees"], in: dir, environment: env)
        XCTAssertEqual(usage.status, 64, usage.err)
        let stats = try runCLI(binary, ["stats", "--store", store, "--json"], in: dir, environment: env)
        XCTAssertEqual(stats.status, 0, stats.err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [String: Any])
        XCTAssertEqual(obj["documents"] as? Int, 1)
        XCTAssertEqual(obj["store"] as? String, store)

        // Several questions, the model loaded once: one JSON line each, a failure among them
        // reported in its line and in the exit status, the others answered.
        try "Do colonies have one queen?\n# skipped\n\nzzqx qqxz\nWhere do honey bees live?\n"
            .write(to: dir.appendingPathComponent("q.txt"), atomically: true, encoding: .utf8)
        let many = try runCLI(binary, ["query", "--store", store, "--questions", "q.txt", "--max-tokens", "3", "--json"], in: dir, environment: env)
        XCTAssertEqual(many.status, 1, many.err)
        let lines = many.out.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        guard lines.count == 3 else { return XCTFail("expected 3 JSON lines, got \(lines.count) (status \(many.status)): \(many.out)\n\(many.err)") }
        XCTAssertEqual(lines.map { $0?["question"] as? String }, ["Do colonies have one queen?", "zzqx qqxz", "Where do honey bees live?"])
        XCTAssertNotNil((lines[0]?["result"] as? [String: Any])?["answer"])
        XCTAssertEqual((lines[1]?["error"] as? [String: Any])?["code"] as? String, "invalid_input")
        XCTAssertNotNil((lines[2]?["result"] as? [String: Any])?["answer"])
        // The same question alone gives the same answer.
        let one = try runCLI(binary, ["query", "--store", store, "--max-tokens", "3", "--json", "Where do honey bees live?"], in: dir, environment: env)
        let single = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(one.out.utf8)) as? [String: Any])
        XCTAssertEqual(single["answer"] as? String, (lines[2]?["result"] as? [String: Any])?["answer"] as? String)
        let both = try runCLI(binary, ["query", "--store", store, "--questions", "q.txt", "bees?"], in: dir, environment: env)
        XCTAssertEqual(both.status, 64, both.err)

        // The decode thread must let go of the store before the process exits: when it released
        // the last question while `exit` ran, RocksDB closed under the libraries' destructors and
        // the process died with SIGSEGV in about 6% of runs, its answers unprinted.
        for run in 0..<15 {
            let again = try runCLI(binary, ["query", "--store", store, "--questions", "q.txt", "--max-tokens", "2", "--json"], in: dir, environment: env)
            XCTAssertFalse(again.crashed, "run \(run): \(again.err)")
            XCTAssertEqual(again.status, 1, "run \(run): \(again.err)")
            XCTAssertEqual(again.out.split(separator: "\n").count, 3, "run \(run): \(again.out)")
        }
    }
}
