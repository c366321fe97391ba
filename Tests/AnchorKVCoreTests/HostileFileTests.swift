import Foundation
import TestSupport
import XCTest

/// tools/hostile/make_hostile.py's files (hostile but well-formed: every checksum recomputed),
/// tried on the debug and the release binary: each is refused with an error naming the problem,
/// never a signal, and the store it was imported into is unchanged.
final class HostileFileTests: XCTestCase {
    struct Case: Decodable {
        var file: String
        var `class`: String
        var phrase: String
        var alone_ok: Bool
        var commands: [String]
    }

    func testHostileFilesAreRefusedByTheDebugAndTheReleaseBinary() throws {
        _ = try DefaultModel.load()  // skips (or fails under tools/test.sh) without the model
        let binaries = [try CLIBinary.url(), try CLIBinary.releaseURL()]
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("akv-hostile-cli-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        func p(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let corpus = CLIBinary.root.appendingPathComponent("tools/demo/corpus")
        let cli = binaries[0]
        func ok(_ args: [String]) throws -> String {
            let r = try runCLI(cli, args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.err)")
            return r.out
        }
        // The real files the hostile ones are made from.
        _ = try ok(["ingest", "--store", p("src"), "--no-adapter", "--ratio", "15", corpus.appendingPathComponent("honeybees.md").path,
                    corpus.appendingPathComponent("danube.md").path])
        _ = try ok(["export", "--store", p("src"), "-o", p("src.akvs")])
        _ = try ok(["compress", "--no-adapter", "--ratio", "15", corpus.appendingPathComponent("danube.md").path, "-o", p("danube.akv")])
        let gen = Process()
        gen.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gen.arguments = ["python3", CLIBinary.root.appendingPathComponent("tools/hostile/make_hostile.py").path, "--snapshot", p("src.akvs"),
                         "--kv", p("danube.akv"), "--gguf", DefaultModel.path(), p("hostile")]
        try gen.run()
        gen.waitUntilExit()
        XCTAssertEqual(gen.terminationStatus, 0, "make_hostile.py")
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: URL(fileURLWithPath: p("hostile/cases.json"))))
        XCTAssertGreaterThanOrEqual(cases.count, 20)

        // The store hostile snapshots are imported into, and what it holds before.
        _ = try ok(["ingest", "--store", p("dst"), "--no-adapter", "--ratio", "15", corpus.appendingPathComponent("printing-press.md").path])
        let before = try ok(["stats", "--store", p("dst"), "--json"]) + (try ok(["docs", "list", "--store", p("dst"), "--json"]))

        for binary in binaries {
            let build = binary.deletingLastPathComponent().lastPathComponent
            for c in cases {
                let file = p("hostile/\(c.file)")
                for command in c.commands {
                    let args: [String]
                    switch command {
                    case "inspect": args = ["snapshot", "inspect", "--verify", file]
                    case "import": args = ["import", "--store", p("dst"), file]
                    case "ask": args = ["ask", "--no-adapter", "--context", file, "--question", "Where does it rise?", "--max-tokens", "2"]
                    default: args = ["generate", "--model", file, "--prompt", "hi", "--max-tokens", "1"]
                    }
                    let r = try runCLI(binary, args)
                    let what = "\(build) \(command) \(c.class)"
                    XCTAssertFalse(r.crashed, "\(what) died on a signal: \(r.err.prefix(400))")
                    if command == "inspect" && c.alone_ok {
                        XCTAssertEqual(r.status, 0, "\(what) is consistent in itself: \(r.err)")
                        continue
                    }
                    XCTAssertNotEqual(r.status, 0, "\(what) was accepted")
                    XCTAssertTrue(r.err.hasPrefix("error: "), "\(what): \(r.err.prefix(300))")
                    XCTAssertTrue(r.err.contains(c.phrase), "\(what): '\(c.phrase)' not in \(r.err.prefix(400))")
                }
            }
        }
        let after = try ok(["stats", "--store", p("dst"), "--json"]) + (try ok(["docs", "list", "--store", p("dst"), "--json"]))
        XCTAssertEqual(after.replacingOccurrences(of: "\"disk_bytes\":[0-9]+", with: "", options: .regularExpression),
                       before.replacingOccurrences(of: "\"disk_bytes\":[0-9]+", with: "", options: .regularExpression),
                       "no refused file changed the store")
    }
}
