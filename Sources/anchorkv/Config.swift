import Foundation
import HTTPService
import KnowledgeBase

/// Settings from config/anchorkv.json (or --config / $ANCHORKV_CONFIG). Flags override the
/// environment, which overrides this file, which overrides the built-in defaults.
struct AppConfig {
    var model: String?
    var threads: Int?
    var maxTokens = 128
    var temperature: Float = 0
    var topP: Float = 0.95
    var seed: UInt64 = 0
    /// SAC: the default ratio and the adapter file per ratio (relative to the repository root).
    var sacRatio = 5
    var sacAdapters: [Int: String] = [:]
    var answerMaxTokens = 64
    /// The store folder (relative paths against the repository root).
    var storePath = "data/store"
    /// Per-document ingest bounds (the "ingest" object), for `ingest` and `serve` alike.
    var ingestLimits = IngestLimits()
    /// `anchorkv serve` settings (the "serve" object).
    var serve = ServiceConfig()
    /// Where the file was found (for relative paths and for messages), nil when none was.
    var source: URL?

    static func load(explicitPath: String?) throws -> AppConfig {
        let env = ProcessInfo.processInfo.environment
        var url: URL?
        if let p = explicitPath ?? env["ANCHORKV_CONFIG"] {
            url = URL(fileURLWithPath: p)
            guard FileManager.default.fileExists(atPath: p) else { throw CLIError("config file \(p) does not exist") }
        } else {
            var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            for _ in 0..<8 {
                let candidate = dir.appendingPathComponent("config/anchorkv.json")
                if FileManager.default.fileExists(atPath: candidate.path) { url = candidate; break }
                dir.deleteLastPathComponent()
            }
        }
        var c = AppConfig()
        guard let url else { return c }
        c.source = url
        guard let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIError("config file \(url.path) is not a JSON object; fix it or pass --config PATH")
        }
        let root = url.deletingLastPathComponent().deletingLastPathComponent()
        if let m = obj["model"] as? String, !m.isEmpty {
            c.model = m.hasPrefix("/") ? m : root.appendingPathComponent(m).path
        }
        if let t = obj["threads"] as? Int, t > 0 { c.threads = t }
        if let g = obj["generate"] as? [String: Any] {
            if let v = g["max_tokens"] as? Int { c.maxTokens = v }
            if let v = g["temperature"] as? Double { c.temperature = Float(v) }
            if let v = g["top_p"] as? Double { c.topP = Float(v) }
            if let v = g["seed"] as? Int { c.seed = UInt64(v) }
        }
        if let st = obj["store"] as? String, !st.isEmpty {
            c.storePath = st.hasPrefix("/") ? st : root.appendingPathComponent(st).path
        } else {
            c.storePath = root.appendingPathComponent(c.storePath).path
        }
        if let sac = obj["sac"] as? [String: Any] {
            if let r = sac["ratio"] as? Int {
                guard r >= 1 else { throw CLIError("config file \(url.path): sac.ratio must be >= 1") }
                c.sacRatio = r
            }
            if let m = sac["max_answer_tokens"] as? Int, m > 0 { c.answerMaxTokens = m }
            if let adapters = sac["adapters"] as? [String: String] {
                for (k, v) in adapters {
                    guard let r = Int(k), r >= 1 else { throw CLIError("config file \(url.path): sac.adapters key '\(k)' is not a ratio") }
                    c.sacAdapters[r] = v.hasPrefix("/") ? v : root.appendingPathComponent(v).path
                }
            }
        }
        if let ingest = obj["ingest"] {
            guard let ingest = ingest as? [String: Any] else { throw CLIError("config file \(url.path): ingest must be an object") }
            if let v = ingest["max_document_tokens"] {
                guard let n = v as? Int, n >= 1 else { throw CLIError("config file \(url.path): ingest.max_document_tokens must be a positive integer") }
                c.ingestLimits.maxDocumentTokens = n
            }
            if let v = ingest["max_document_seconds"] {
                guard let n = (v as? NSNumber)?.doubleValue, n > 0, n.isFinite else { throw CLIError("config file \(url.path): ingest.max_document_seconds must be a positive number") }
                c.ingestLimits.maxDocumentSeconds = n
            }
        }
        if let serve = obj["serve"] {
            guard let serve = serve as? [String: Any] else { throw CLIError("config file \(url.path): serve must be an object") }
            do { try c.serve.apply(json: serve, root: root) } catch { throw CLIError("config file \(url.path): \(error)") }
        }
        return c
    }
}
