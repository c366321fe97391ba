import AnchorKVCore
import Foundation
import NIOCore

/// Every JSON request body's checks in one place: a body becomes the request it describes, or
/// a 400 naming the field at fault. Nothing here touches the store, so the handlers call these
/// before any work starts, and the fuzzer (FuzzTargets) drives them with arbitrary bytes.
public enum RequestBodies {
    /// The routes that take a JSON body.
    public enum Route: String, CaseIterable, Sendable {
        case ingest = "POST /v1/documents"
        case query = "POST /v1/query"
        case chat = "POST /v1/chat/completions"
        case export = "POST /v1/snapshots"
        case compact = "POST /v1/compact"
    }

    /// Parses `body` exactly as `route`'s handler does, and stops there; throws the handler's 400.
    public static func check(_ route: Route, body: [UInt8], config: ServiceConfig, modelID: String) throws {
        var buffer = ByteBuffer()
        buffer.writeBytes(body)
        switch route {
        case .ingest: _ = try ingest(try JSONValue.parseObject(buffer), config: config)
        case .query: _ = try query(try JSONValue.parseObject(buffer), accept: "", config: config)
        case .chat: _ = try chat(try JSONValue.parseObject(buffer), modelID: modelID, config: config)
        case .export: _ = try export(buffer)
        case .compact: _ = try compact(try JSONValue.parseObject(buffer))
        }
    }

    // MARK: POST /v1/documents

    struct Ingest: Sendable {
        var documents: [IngestDocument]
        var background: Bool
    }

    /// `{"id", "text", "title"?, "source"?}` or `{"documents": [...], "async"?: bool}`; ids unique.
    static func ingest(_ obj: [String: JSONValue], config: ServiceConfig) throws -> Ingest {
        var docs: [IngestDocument] = []
        var background = false
        if obj["documents"] != nil {
            var f = Fields(obj)
            let list = try f.array("documents") ?? []
            background = try f.bool("async") ?? false
            try f.rejectUnknown()
            guard !list.isEmpty else { throw APIError.badRequest("'documents' is empty") }
            guard list.count <= config.maxDocumentsPerRequest else {
                throw APIError.badRequest("\(list.count) documents in one request; the limit is \(config.maxDocumentsPerRequest) (serve.max_documents_per_request)")
            }
            docs = try list.enumerated().map { try document($0.element, path: "documents[\($0.offset)]") }
        } else {
            docs = [try document(.object(obj), path: "")]
        }
        var seen = Set<String>()
        for d in docs where !seen.insert(d.id).inserted { throw APIError.badRequest("document id '\(d.id)' appears twice in the request") }
        return Ingest(documents: docs, background: background)
    }

    /// One document of an ingest body: id, text, optional title and source.
    static func document(_ v: JSONValue, path: String) throws -> IngestDocument {
        guard let o = v.object else { throw APIError.badRequest("'\(path)' must be an object with id and text") }
        var f = Fields(o, path: path)
        let id = try f.string("id", required: true, maxBytes: 512)!
        guard !id.isEmpty, !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError.badRequest("'\(path.isEmpty ? "" : path + ".")id' must be 1 to 512 bytes without control characters")
        }
        let text = try f.string("text", required: true)!
        guard !text.allSatisfy(\.isWhitespace) else { throw APIError.badRequest("document '\(id)': the text is empty") }
        guard !text.utf8.contains(0) else { throw APIError.badRequest("document '\(id)': the text contains NUL bytes; send text, not binary") }
        let title = try f.string("title", maxBytes: 1024) ?? id
        let source = try f.string("source", maxBytes: 1024) ?? "http"
        try f.rejectUnknown()
        return IngestDocument(id: id, title: title, text: text, origin: source)
    }

    // MARK: POST /v1/query

    /// question, k, documents, max_tokens, stream (default: what the Accept header asks for).
    static func query(_ obj: [String: JSONValue], accept: String, config: ServiceConfig) throws -> (question: KnowledgeService.Question, stream: Bool) {
        var f = Fields(obj)
        let question = try f.string("question", required: true, maxBytes: 16 << 10)!
        guard !question.allSatisfy(\.isWhitespace) else { throw APIError.badRequest("'question' is empty") }
        let k = try f.int("k", in: 1...config.maxK)
        let docs = try f.strings("documents", maxCount: 1024)
        if let docs, docs.isEmpty { throw APIError.badRequest("'documents' is empty; leave it out to search every document") }
        let maxTokens = try f.int("max_tokens", in: 1...config.maxAnswerTokens) ?? config.defaultMaxTokens
        let stream = try f.bool("stream") ?? accept.contains("text/event-stream")
        try f.rejectUnknown()
        // With documents and no k: every window of those documents (as the CLI's --doc).
        return (KnowledgeService.Question(question, k: docs == nil ? (k ?? config.defaultK) : k, documents: docs, maxTokens: maxTokens), stream)
    }

    // MARK: POST /v1/chat/completions

    struct Chat: Sendable {
        var question: KnowledgeService.Question
        var stream: Bool
        var includeUsage: Bool
    }

    /// The text of a message's `content`: a string, or an array of parts of which the text ones count.
    static func text(of content: JSONValue?, at path: String) throws -> String {
        if let s = content?.string { return s }
        guard let parts = content?.array else { throw APIError.badRequest("'\(path).content' must be a string or an array of content parts") }
        var out: [String] = []
        for (i, p) in parts.enumerated() {
            guard let o = p.object, o["type"]?.string == "text", let t = o["text"]?.string else {
                throw APIError.badRequest("'\(path).content[\(i)]' must be a text part ({\"type\": \"text\", \"text\": ...}); other parts are not supported")
            }
            out.append(t)
        }
        return out.joined(separator: "\n")
    }

    /// The request as a question to the knowledge base; OpenAI fields this service cannot honour are refused by name.
    static func chat(_ obj: [String: JSONValue], modelID: String, config: ServiceConfig) throws -> Chat {
        var f = Fields(obj)
        if let m = try f.string("model", maxBytes: 256), m != modelID {
            throw APIError(.notFound, "model_not_found", "this service answers with model '\(modelID)' only (GET /v1/models), not '\(m)'")
        }
        guard let messages = try f.array("messages"), !messages.isEmpty else { throw APIError.badRequest("'messages' must be a non-empty array") }
        guard messages.count <= 256 else { throw APIError.badRequest("'messages' has \(messages.count) entries; the limit is 256") }
        var question: String?
        for (i, m) in messages.enumerated() {
            guard let o = m.object, let role = o["role"]?.string else { throw APIError.badRequest("'messages[\(i)]' must be an object with a role") }
            guard ["system", "developer", "user", "assistant"].contains(role) else {
                throw APIError.badRequest("'messages[\(i)].role' must be system, developer, user or assistant, not '\(role)'")
            }
            if role == "user" { question = try text(of: o["content"], at: "messages[\(i)]") }
        }
        guard let question, !question.allSatisfy(\.isWhitespace) else { throw APIError.badRequest("no user message with text: the last user message is the question") }
        guard question.utf8.count <= 16 << 10 else { throw APIError.badRequest("the question is \(question.utf8.count) bytes; the limit is 16384") }
        let maxTokens = try f.int("max_completion_tokens", in: 1...config.maxAnswerTokens) ?? f.int("max_tokens", in: 1...config.maxAnswerTokens)
        let temperature = try f.double("temperature", in: 0...2) ?? 0
        let topP = try f.double("top_p", in: 0.000001...1) ?? 1
        let seed = try f.int("seed", in: 0...Int.max) ?? 0
        if let n = try f.int("n", in: 1...128), n != 1 { throw APIError.badRequest("'n' must be 1: one answer per request") }
        _ = try f.string("user", maxBytes: 256)
        let stream = try f.bool("stream") ?? false
        var includeUsage = false
        if var so = try f.object("stream_options") {
            includeUsage = try so.bool("include_usage") ?? false
            try so.rejectUnknown()
        }
        var k: Int?, documents: [String]?
        if var ext = try f.object("anchorkv") {
            k = try ext.int("k", in: 1...config.maxK)
            documents = try ext.strings("documents", maxCount: 1024)
            if let d = documents, d.isEmpty { throw APIError.badRequest("'anchorkv.documents' is empty; leave it out to search every document") }
            try ext.rejectUnknown()
        }
        try f.rejectUnknown()
        let q = KnowledgeService.Question(question, k: documents == nil ? (k ?? config.defaultK) : k, documents: documents,
                                          maxTokens: maxTokens ?? config.defaultMaxTokens, temperature: Float(temperature), topP: Float(topP),
                                          seed: UInt64(seed))
        return Chat(question: q, stream: stream, includeUsage: includeUsage)
    }

    // MARK: POST /v1/snapshots and /v1/compact

    /// An empty body exports every document; else `{"documents": [...]}` (non-empty).
    static func export(_ raw: ByteBuffer) throws -> [String]? {
        guard raw.readableBytes > 0 else { return nil }
        var f = Fields(try JSONValue.parseObject(raw))
        let documents = try f.strings("documents", maxCount: 100_000)
        try f.rejectUnknown()
        if let d = documents, d.isEmpty { throw APIError.badRequest("'documents' is empty; leave it out to export every document") }
        return documents
    }

    struct Compact: Sendable {
        var ratio: Int
        var documents: [String]?
        var olderThan: Date?
        var noAdapter: Bool
    }

    /// `{"to_ratio": 15, "documents"?: [...], "older_than"?: "30d" | ISO 8601, "no_adapter"?: bool}`
    static func compact(_ obj: [String: JSONValue]) throws -> Compact {
        var f = Fields(obj)
        guard let ratio = try f.int("to_ratio", in: 1...1000) else { throw APIError.badRequest("missing field 'to_ratio'") }
        let documents = try f.strings("documents", maxCount: 100_000)
        let olderThan = try f.string("older_than", maxBytes: 64).map(age)
        let noAdapter = try f.bool("no_adapter") ?? false
        try f.rejectUnknown()
        if let d = documents, d.isEmpty { throw APIError.badRequest("'documents' is empty; leave it out to compact every document") }
        return Compact(ratio: ratio, documents: documents, olderThan: olderThan, noAdapter: noAdapter)
    }

    /// An age (30d, 12h, 90m, 45s) before now, or an ISO 8601 date.
    static func age(_ s: String) throws -> Date {
        do { return try KnowledgeService.parseAge(s) } catch { throw APIError.badRequest("'older_than': \(error.message)") }
    }
}
