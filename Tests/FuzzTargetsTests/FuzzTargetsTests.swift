import Foundation
import FuzzTargets
import XCTest

/// The fuzz targets over their committed corpora (tools/fuzz/corpus/TARGET): the real files they
/// were seeded with must be accepted (else a target would be fuzzing only its first check), a
/// cut or scrambled seed must be refused, and every input the fuzzers found (tools/fuzz/found)
/// must run without a crash.
final class FuzzTargetsTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let context = FuzzContext(modelPath: root.appendingPathComponent("Tests/LLMTests/Goldens/tiny-llama").path)

    func files(_ folder: String) -> [URL] {
        let dir = Self.root.appendingPathComponent(folder)
        return ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    func run(_ target: FuzzTarget, _ data: Data) -> Bool { data.withUnsafeBytes { target.run($0, context: context) } }

    func testEverySeedIsAcceptedAndADamagedOneRefused() throws {
        for target in FuzzTarget.allCases {
            let seeds = files("tools/fuzz/corpus/\(target.rawValue)").filter { $0.lastPathComponent.hasPrefix("seed-") }
            XCTAssertFalse(seeds.isEmpty, "\(target.rawValue): no seed-* files in tools/fuzz/corpus/\(target.rawValue)")
            for s in seeds {
                let data = try Data(contentsOf: s)
                XCTAssertTrue(run(target, data), "\(target.rawValue): the seed \(s.lastPathComponent) was refused")
                // Cut at two thirds: every format here is refused short (JSON no longer parses,
                // a binary file misses bytes it declares).
                XCTAssertFalse(run(target, data.prefix(data.count * 2 / 3)), "\(target.rawValue): a cut \(s.lastPathComponent) was accepted")
            }
        }
    }

    func testEverythingTheFuzzersFoundRunsWithoutACrash() throws {
        for target in FuzzTarget.allCases {
            for f in files("tools/fuzz/corpus/\(target.rawValue)") + files("tools/fuzz/found/\(target.rawValue)") {
                _ = run(target, try Data(contentsOf: f))  // reaching the next line is the test
            }
        }
    }
}
