import Foundation
import KnowledgeBase

/// Every setting of the application, layered: built-in defaults < the config file
/// (config/anchorkv.json) < the environment (ANCHORKV_*) < command-line flags (`Overrides`).
/// An unknown or wrongly typed setting is an error that names it.
public struct AppConfig: Sendable {
    public var model: String?
    public var threads: Int?
    public var maxTokens = 128
    public var temperature: Float = 0
    public var topP: Float = 0.95
    public var seed: UInt64 = 0
    /// SAC: the default ratio and the adapter file per ratio (relative paths against the root).
    public var sacRatio = 5
    public var sacAdapters: [Int: String] = [:]
    public var answerMaxTokens = 64
    /// The store folder.
    public var storePath = "data/store"
    /// Per-document ingest bounds (the "ingest" object), for `ingest` and `serve` alike.
    public var ingestLimits = IngestLimits()
    /// `anchorkv serve` settings (the "serve" object, ANCHORKV_HOST/PORT/API_TOKEN[_FILE]).
    public var serve = ServiceConfig()
    /// The file the settings came from (nil: none was found, built-in defaults).
    public var source: URL?
    /// The folder relative paths resolve against: the one holding config/, else the working folder.
    public var root: URL

    public init(root: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)) {
        self.root = root
        storePath = root.appendingPathComponent("data/store").path
    }

    /// What command-line flags set; nil leaves the lower layers' value.
    public struct Overrides: Sendable {
        public var configPath: String?
        public var model: String?
        public var threads: Int?
        public var store: String?
        public init(configPath: String? = nil, model: String? = nil, threads: Int? = nil, store: String? = nil) {
            self.configPath = configPath; self.model = model; self.threads = threads; self.store = store
        }
    }

    /// The relative location of the default model and config inside a checkout (what tools/setup.sh fills).
    public static let defaultModelRelativePath = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let configRelativePath = "config/anchorkv.json"

    /// Loads the layers. The file is `overrides.configPath`, else $ANCHORKV_CONFIG, else the first
    /// config/anchorkv.json in the working folder or a parent, in the executable's folder or a
    /// parent (a checkout's .build/release/anchorkv finds its checkout from anywhere), or
    /// ~/.config/anchorkv/anchorkv.json.
    public static func load(_ overrides: Overrides = Overrides(),
                            environment env: [String: String] = ProcessInfo.processInfo.environment) throws(CoreError) -> AppConfig {
        do {
            var c = try fileLayer(explicitPath: overrides.configPath ?? env["ANCHORKV_CONFIG"].flatMap { $0.isEmpty ? nil : $0 })
            try c.applyEnvironment(env)
            try c.apply(overrides)
            return c
        } catch let e as CoreError { throw e } catch { throw CoreError.from(error) }
    }

    /// Folders searched for config/ and models/: the working folder and the executable's, with their parents.
    static func searchFolders() -> [URL] {
        var out: [URL] = []
        for start in [URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                      URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath().deletingLastPathComponent()] {
            var dir = start.standardized
            for _ in 0..<8 {
                if !out.contains(dir) { out.append(dir) }
                let up = dir.deletingLastPathComponent()
                if up == dir { break }
                dir = up
            }
        }
        return out
    }

    static func findConfigFile() -> URL? {
        for dir in searchFolders() {
            let candidate = dir.appendingPathComponent(configRelativePath)
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        let home = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/anchorkv/anchorkv.json")
        return FileManager.default.fileExists(atPath: home.path) ? home : nil
    }

    /// The default model when nothing names one: models/... in the working folder, the executable's, or a parent.
    static func findDefaultModel() -> String? {
        for dir in searchFolders() {
            let candidate = dir.appendingPathComponent(defaultModelRelativePath).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The model to load: the layers' choice, else the default model wherever setup put it.
    public var modelPath: String { model ?? Self.findDefaultModel() ?? Self.defaultModelRelativePath }

    func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : root.appendingPathComponent(path).path }

    static func fileLayer(explicitPath: String?) throws -> AppConfig {
        var url: URL?
        if let p = explicitPath {
            guard FileManager.default.fileExists(atPath: p) else { throw CoreError(.invalidConfig, "config file \(p) does not exist") }
            url = URL(fileURLWithPath: p)
        } else {
            url = findConfigFile()
        }
        guard let url else { return AppConfig() }
        // config/anchorkv.json resolves paths against the folder holding config/; any other file, against its own folder.
        let folder = url.deletingLastPathComponent()
        var c = AppConfig(root: folder.lastPathComponent == "config" ? folder.deletingLastPathComponent() : folder)
        c.source = url
        guard let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CoreError(.invalidConfig, "config file \(url.path) is not a JSON object; fix it or pass --config PATH")
        }
        do { try c.apply(file: obj) } catch let e as ConfigError {
            throw CoreError(.invalidConfig, "config file \(url.path): \(e.message)")
        }
        return c
    }

    mutating func apply(file obj: [String: Any]) throws {
        var top = ConfigSection(obj, path: "")
        if let m = try top.string("model"), !m.isEmpty { model = resolve(m) }
        if let t = try top.int("threads", min: 0), t > 0 { threads = t }
        // A URL (redis://...) stays as written; only a folder resolves against the config's root.
        if let st = try top.string("store"), !st.isEmpty { storePath = st.contains("://") ? st : resolve(st) }
        if var g = try top.section("generate") {
            if let v = try g.int("max_tokens", min: 1) { maxTokens = v }
            if let v = try g.double("temperature", min: 0) { temperature = Float(v) }
            if let v = try g.double("top_p", min: 0) {
                guard v > 0, v <= 1 else { throw ConfigError(message: "generate.top_p must be in (0, 1], not \(v)") }
                topP = Float(v)
            }
            if let v = try g.int("seed", min: 0) { seed = UInt64(v) }
            try g.rejectUnknown()
        }
        if var sac = try top.section("sac") {
            if let r = try sac.int("ratio", min: 1) { sacRatio = r }
            if let m = try sac.int("max_answer_tokens", min: 1) { answerMaxTokens = m }
            if var adapters = try sac.section("adapters") {
                for key in adapters.keys {
                    guard let r = Int(key), r >= 1 else { throw ConfigError(message: "sac.adapters key '\(key)' is not a ratio (a positive integer)") }
                    if let v = try adapters.string(key) { sacAdapters[r] = resolve(v) }
                }
            }
            try sac.rejectUnknown()
        }
        if var ingest = try top.section("ingest") {
            if let n = try ingest.int("max_document_tokens", min: 1) { ingestLimits.maxDocumentTokens = n }
            if let n = try ingest.double("max_document_seconds", min: 0) {
                guard n > 0 else { throw ConfigError(message: "ingest.max_document_seconds must be a positive number") }
                ingestLimits.maxDocumentSeconds = n
            }
            try ingest.rejectUnknown()
        }
        if var s = try top.section("serve") { try serve.apply(&s, root: root) }
        try top.rejectUnknown()
    }

    mutating func applyEnvironment(_ env: [String: String]) throws {
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        func int(_ name: String) throws -> Int? {
            guard let s = value(name) else { return nil }
            guard let v = Int(s) else { throw CoreError(.invalidConfig, "\(name) must be an integer, not '\(s)'") }
            return v
        }
        if let m = value("ANCHORKV_MODEL") { model = m }
        if let t = try int("ANCHORKV_THREADS") {
            guard t >= 0 else { throw CoreError(.invalidConfig, "ANCHORKV_THREADS must be >= 0 (0: all cores)") }
            threads = t > 0 ? t : nil
        }
        if let s = value("ANCHORKV_STORE") { storePath = s }
        if let h = value("ANCHORKV_HOST") { serve.host = h }
        if let p = try int("ANCHORKV_PORT") { serve.port = p }
        if let f = value("ANCHORKV_API_TOKEN_FILE") { serve.apiToken = try ServiceConfig.readToken(file: f) }
        if let t = value("ANCHORKV_API_TOKEN") { serve.apiToken = t }
    }

    mutating func apply(_ o: Overrides) throws {
        if let m = o.model { model = m }
        if let t = o.threads {
            guard t > 0 else { throw CoreError(.invalidInput, "--threads must be positive") }
            threads = t
        }
        if let s = o.store { storePath = s }
    }
}

/// One object of the config file, read strictly: each getter checks its value's JSON type and
/// `rejectUnknown` refuses keys nobody read (a misspelt setting is an error, not a silent default).
struct ConfigSection {
    let object: [String: Any]
    let path: String
    private(set) var read: Set<String> = ["_comment"]

    init(_ object: [String: Any], path: String) { self.object = object; self.path = path }

    var keys: [String] { object.keys.filter { $0 != "_comment" }.sorted() }
    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// JSON true/false (JSONSerialization gives NSNumbers of type char for them).
    static func isBool(_ v: Any) -> Bool { (v as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false }

    mutating func value(_ key: String) -> Any? {
        read.insert(key)
        guard let v = object[key], !(v is NSNull) else { return nil }
        return v
    }

    mutating func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v as? String else { throw ConfigError(message: "\(name(key)) must be a string") }
        return s
    }

    mutating func int(_ key: String, min: Int) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard !Self.isBool(v), let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) else {
            throw ConfigError(message: "\(name(key)) must be an integer")
        }
        guard i >= min else {
            throw ConfigError(message: "\(name(key)) must be a \(min == 1 ? "positive" : "non-negative") integer, not \(i)")
        }
        return i
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard Self.isBool(v), let b = v as? Bool else { throw ConfigError(message: "\(name(key)) must be true or false") }
        return b
    }

    mutating func double(_ key: String, min: Double) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard !Self.isBool(v), let n = (v as? NSNumber)?.doubleValue, n.isFinite else { throw ConfigError(message: "\(name(key)) must be a number") }
        guard n >= min else { throw ConfigError(message: "\(name(key)) must be >= \(min), not \(n)") }
        return n
    }

    mutating func section(_ key: String) throws -> ConfigSection? {
        guard let v = value(key) else { return nil }
        guard let o = v as? [String: Any] else { throw ConfigError(message: "\(name(key)) must be an object") }
        return ConfigSection(o, path: name(key))
    }

    func rejectUnknown() throws {
        if let unknown = object.keys.filter({ !read.contains($0) }).sorted().first {
            let known = read.subtracting(["_comment"]).sorted().map(name)
            throw ConfigError(message: "unknown setting \(name(unknown)) (known here: \(known.joined(separator: ", ")))")
        }
    }
}
