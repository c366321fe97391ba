import Foundation

/// A document to ingest, as read from a file, a folder or a JSONL line.
public struct SourceDocument: Sendable {
    public var id: String
    public var title: String
    public var text: String
    /// Where it came from (path, or path:line for JSONL).
    public var origin: String

    public init(id: String, title: String, text: String, origin: String) {
        self.id = id; self.title = title; self.text = text; self.origin = origin
    }
}

/// An input that was not ingested, with the reason (reported, never stored half-done).
public struct SkippedInput: Sendable {
    public var origin: String
    public var reason: String
}

/// Reads text and markdown files, folders (recursively, in path order) and JSONL files with
/// id / text / title fields.
public enum DocumentSource {
    /// Files larger than this are refused (a SAC document should be a document, not a dump).
    public static let maxBytes = 16 << 20

    public static func read(paths: [String]) -> (documents: [SourceDocument], skipped: [SkippedInput]) {
        var docs: [SourceDocument] = [], skipped: [SkippedInput] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                skipped.append(SkippedInput(origin: p, reason: "no such file or folder"))
                continue
            }
            if isDir.boolValue {
                let root = URL(fileURLWithPath: p).standardized
                let files = (fm.enumerator(atPath: root.path)?.compactMap { $0 as? String } ?? []).sorted()
                for rel in files {
                    let full = root.appendingPathComponent(rel)
                    var d: ObjCBool = false
                    guard fm.fileExists(atPath: full.path, isDirectory: &d), !d.boolValue else { continue }
                    if rel.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }  // hidden files and folders
                    readFile(full.path, id: rel, into: &docs, skipped: &skipped)
                }
            } else {
                readFile(p, id: URL(fileURLWithPath: p).lastPathComponent, into: &docs, skipped: &skipped)
            }
        }
        return (docs, skipped)
    }

    static func readFile(_ path: String, id: String, into docs: inout [SourceDocument], skipped: inout [SkippedInput]) {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size <= maxBytes else {
            skipped.append(SkippedInput(origin: path, reason: "file is \(size) bytes, over the \(maxBytes >> 20) MiB limit; split it into documents"))
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            skipped.append(SkippedInput(origin: path, reason: "cannot read the file"))
            return
        }
        if path.hasSuffix(".jsonl") {
            readJSONL(data, path: path, into: &docs, skipped: &skipped)
            return
        }
        switch decodeText(data) {
        case .failure(let why):
            skipped.append(SkippedInput(origin: path, reason: why.description))
        case .success(let text):
            docs.append(SourceDocument(id: id, title: title(of: text, fallback: id), text: text, origin: path))
        }
    }

    static func readJSONL(_ data: Data, path: String, into docs: inout [SourceDocument], skipped: inout [SkippedInput]) {
        guard let all = String(data: data, encoding: .utf8) else {
            skipped.append(SkippedInput(origin: path, reason: "not UTF-8 text"))
            return
        }
        for (i, line) in all.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let origin = "\(path):\(i + 1)"
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                skipped.append(SkippedInput(origin: origin, reason: "not a JSON object"))
                continue
            }
            guard let text = obj["text"] as? String else {
                skipped.append(SkippedInput(origin: origin, reason: "no \"text\" string field"))
                continue
            }
            if case .failure(let why) = check(text) {
                skipped.append(SkippedInput(origin: origin, reason: why.description))
                continue
            }
            let id = (obj["id"] as? String) ?? (obj["id"] as? NSNumber)?.stringValue ?? "\(URL(fileURLWithPath: path).lastPathComponent):\(i + 1)"
            docs.append(SourceDocument(id: id, title: (obj["title"] as? String) ?? title(of: text, fallback: id), text: text, origin: origin))
        }
    }

    struct Reason: Error, CustomStringConvertible { let description: String }

    /// UTF-8, not binary, not empty.
    static func decodeText(_ data: Data) -> Result<String, Reason> {
        if data.prefix(8192).contains(0) { return .failure(Reason(description: "binary file (NUL bytes); only UTF-8 text, markdown and JSONL are ingested")) }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(Reason(description: "not valid UTF-8; convert it first (e.g. iconv -f LATIN1 -t UTF-8)"))
        }
        return check(text).map { text }
    }

    static func check(_ text: String) -> Result<Void, Reason> {
        if text.allSatisfy(\.isWhitespace) { return .failure(Reason(description: "empty document")) }
        if text.utf8.contains(0) { return .failure(Reason(description: "text contains NUL characters")) }
        return .success(())
    }

    /// A markdown heading on the first line, else the first line itself (shortened), else the id.
    static func title(of text: String, fallback: String) -> String {
        guard let first = text.split(separator: "\n").first(where: { !$0.allSatisfy(\.isWhitespace) }) else { return fallback }
        var t = first.trimmingCharacters(in: .whitespaces)
        while t.hasPrefix("#") { t.removeFirst() }
        t = t.trimmingCharacters(in: .whitespaces)
        if t.count > 80 { t = String(t.prefix(77)) + "..." }
        return t.isEmpty ? fallback : t
    }
}
