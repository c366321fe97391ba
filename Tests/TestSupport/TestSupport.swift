import Digest
import Foundation
import LLM
import XCTest

/// Helpers shared by the test targets: the default model (loaded once), golden JSON readers,
/// error statistics.
/// A test target's golden folder (its bundle resources): paths and JSON.
public struct GoldenFolder: Sendable {
    public let dir: URL
    public init(_ dir: URL) { self.dir = dir }
    public func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    public func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [String: Any]
    }

    /// What is wrong between MANIFEST.txt ("sha256  relative/path" lines, written by the golden
    /// generators in tools/reference) and the folder: a changed file, a listed file missing, a
    /// file not listed. Empty when the goldens are the ones the generator made.
    public func manifestProblems() throws -> [String] {
        let text = try String(contentsOf: dir.appendingPathComponent("MANIFEST.txt"), encoding: .utf8)
        var listed: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.allSatisfy(\.isWhitespace) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].count == 64 else { return ["MANIFEST.txt: cannot read the line '\(line)'"] }
            listed[String(parts[1])] = String(parts[0])
        }
        var problems: [String] = []
        for (name, want) in listed.sorted(by: { $0.key < $1.key }) {
            guard let data = FileManager.default.contents(atPath: path(name)) else { problems.append("\(name) is listed but missing"); continue }
            let got = SHA256.hex(data)
            if got != want { problems.append("\(name): sha256 \(got), MANIFEST.txt says \(want)") }
        }
        let fm = FileManager.default
        for case let rel as String in fm.enumerator(atPath: dir.path) ?? .init() {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path(rel), isDirectory: &isDir), !isDir.boolValue,
                  !["MANIFEST.txt", ".keep"].contains((rel as NSString).lastPathComponent) else { continue }
            if listed[rel] == nil { problems.append("\(rel) is not in MANIFEST.txt") }
        }
        return problems
    }
}

public func floats(_ any: Any?) -> [Float] { (any as! [NSNumber]).map(\.floatValue) }
public func ints(_ any: Any?) -> [Int32] { (any as! [NSNumber]).map(\.int32Value) }
public func matrix(_ any: Any?) -> [[Float]] { (any as! [Any]).map(floats) }

/// The default model, loaded once. Missing model: the test is skipped with a hint, unless
/// ANCHORKV_REQUIRE_MODEL=1 (CI sets it), where it fails.
public enum DefaultModel {
    nonisolated(unsafe) private static var cached: LlamaModel?
    private static let lock = NSLock()

    /// Where the default model is (tools/setup.sh puts it in models/).
    public static func path() -> String { LlamaModel.defaultModelPath() }

    public static func load() throws -> LlamaModel {
        lock.lock()
        defer { lock.unlock() }
        if let m = cached { return m }
        let path = LlamaModel.defaultModelPath()
        guard FileManager.default.fileExists(atPath: path) else {
            if ProcessInfo.processInfo.environment["ANCHORKV_REQUIRE_MODEL"] == "1" {
                throw LLMError.modelNotFound(path)
            }
            throw XCTSkip("default model not installed (\(path)); run tools/setup.sh")
        }
        let m = try LlamaModel.load(path: path)
        cached = m
        return m
    }
}

/// Max absolute and relative (to the golden's magnitude) error between two vectors.
public struct ErrorStats: CustomStringConvertible {
    public var maxAbs: Double = 0
    public var maxRel: Double = 0
    public var count = 0
    public init() {}
    public mutating func add(_ got: [Float], _ want: [Float], floor: Double = 1) {
        precondition(got.count == want.count, "\(got.count) vs \(want.count)")
        for (g, w) in zip(got, want) {
            let d = abs(Double(g) - Double(w))
            maxAbs = max(maxAbs, d)
            maxRel = max(maxRel, d / max(abs(Double(w)), floor))
            count += 1
        }
    }
    public var description: String { String(format: "max abs %.3g, max rel %.3g over %d values", maxAbs, maxRel, count) }
}

public func strided(_ v: [Float], stride s: Int) -> [Float] { Swift.stride(from: 0, to: v.count, by: s).map { v[$0] } }

/// The debug CLI binary that the fault and end-to-end tests drive (tools/test.sh builds it
/// before `swift test`). Missing, or older than a file under Sources/ (so it would test other
/// code than the checkout's), it is an error naming what to run when ANCHORKV_REQUIRE_MODEL=1
/// (tools/test.sh and CI set it), else the test is skipped with that message.
public enum CLIBinary {
    public struct Unusable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The repository root (the folder holding Package.swift).
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    public static func url() throws -> URL {
        try check(binary: root.appendingPathComponent(".build/debug/anchorkv"), sources: root.appendingPathComponent("Sources"),
                  require: ProcessInfo.processInfo.environment["ANCHORKV_REQUIRE_MODEL"] == "1")
    }

    /// The release binary (tools/test.sh builds it too: hostile inputs are tried on both builds).
    public static func releaseURL() throws -> URL {
        try check(binary: root.appendingPathComponent(".build/release/anchorkv"), sources: root.appendingPathComponent("Sources"),
                  require: ProcessInfo.processInfo.environment["ANCHORKV_REQUIRE_MODEL"] == "1", configuration: "release")
    }

    /// `binary` if it is there and no file under `sources` is newer; else `Unusable` when
    /// `require`, XCTSkip otherwise, each naming the problem and the build command.
    public static func check(binary: URL, sources: URL, require: Bool, configuration: String = "debug") throws -> URL {
        let fm = FileManager.default
        var problem: String?
        if !fm.isExecutableFile(atPath: binary.path) {
            problem = "\(binary.path) is missing"
        } else if let built = (try? fm.attributesOfItem(atPath: binary.path))?[.modificationDate] as? Date {
            let keys: Set<URLResourceKey> = [.contentModificationDateKey, .isRegularFileKey]
            for case let file as URL in fm.enumerator(at: sources, includingPropertiesForKeys: Array(keys), options: [.skipsHiddenFiles]) ?? .init() {
                guard let v = try? file.resourceValues(forKeys: keys), v.isRegularFile == true else { continue }
                if let changed = v.contentModificationDate, changed > built {
                    problem = "\(binary.path) is older than \(file.path)"
                    break
                }
            }
        }
        guard let problem else { return binary }
        let build = configuration == "debug" ? "swift build --product anchorkv" : "swift build -c \(configuration) --product anchorkv"
        let message = "\(problem): build the CLI first (\(build); tools/test.sh does)"
        if require { throw Unusable(description: message) }
        throw XCTSkip(message)
    }
}

/// Runs the CLI binary to its exit (from `folder`, default the repository root): status, stdout, stderr.
/// `environment` replaces the process's environment when given.
public func runCLI(_ binary: URL, _ args: [String], in folder: URL = CLIBinary.root,
                   environment: [String: String]? = nil) throws -> (status: Int32, out: String, err: String, crashed: Bool) {
    let p = Process()
    p.executableURL = binary
    p.arguments = args
    p.currentDirectoryURL = folder
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self), p.terminationReason == .uncaughtSignal)
}
