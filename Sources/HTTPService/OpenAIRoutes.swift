import AnchorKVCore
import Foundation
import Hummingbird
import NIOCore

/// `POST /v1/chat/completions` and `GET /v1/models`, in the shape OpenAI's clients expect,
/// answered from the knowledge base: the last user message is the question, retrieval over the
/// store (or the documents the `anchorkv` extension names) picks the KV. Errors keep this
/// service's JSON error object, which carries OpenAI's `message` and `code` fields.
extension Handlers {
    /// The one model this service answers with, as OpenAI's model objects name it.
    var modelID: String { core.modelName }

    func models() -> Response {
        .json(["object": "list", "data": [["id": .string(modelID), "object": "model", "created": .int(Int(service.startedAt.timeIntervalSince1970)),
                                            "owned_by": "anchorkv"]]])
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

    struct ChatRequest: Sendable {
        var question: KnowledgeService.Question
        var stream: Bool
        var includeUsage: Bool
    }

    /// The request as a question to the knowledge base; OpenAI fields this service cannot honour are refused by name.
    func parseChat(_ obj: [String: JSONValue]) throws -> ChatRequest {
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
            if role == "user" { question = try Self.text(of: o["content"], at: "messages[\(i)]") }
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
        return ChatRequest(question: q, stream: stream, includeUsage: includeUsage)
    }

    static func usage(_ a: Answer) -> JSONValue {
        // The prompt is what the decoder attends to and prefills: the anchors and the question block.
        let prompt = a.anchors + a.questionTokens
        return ["prompt_tokens": .int(prompt), "completion_tokens": .int(a.answerTokens), "total_tokens": .int(prompt + a.answerTokens)]
    }

    static func finishReason(_ a: Answer) -> String { a.stoppedByToken ? "stop" : "length" }

    /// The answer's sources and timings: the `anchorkv` extension of a completion.
    static func extensionJSON(_ o: AnchorService.QueryOutcome) -> JSONValue {
        guard case .object(var q) = queryJSON(o) else { return .null }
        q["answer"] = nil
        return .object(q)
    }

    /// POST /v1/chat/completions
    func chatCompletions(_ request: Request) async throws -> Response {
        let arrival = ContinuousClock.now
        let chat = try parseChat(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)))
        let deadline = arrival + .nanoseconds(Int64(config.requestTimeout * 1e9))
        let flag = StopFlag(deadline: deadline)
        let id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let created = Int(Date().timeIntervalSince1970)
        let model = modelID
        if !chat.stream {
            let o = try await service.query(chat.question, deadline: deadline, flag: flag)
            return .json(["id": .string(id), "object": "chat.completion", "created": .int(created), "model": .string(model),
                          "choices": [["index": 0, "message": ["role": "assistant", "content": .string(o.answer.answer)],
                                       "finish_reason": .string(Self.finishReason(o.answer)), "logprobs": .null]],
                          "usage": Self.usage(o.answer), "anchorkv": Self.extensionJSON(o)])
        }
        @Sendable func chunk(_ delta: JSONValue, finish: String?, extra: [String: JSONValue] = [:]) -> String {
            var o: [String: JSONValue] = ["id": .string(id), "object": "chat.completion.chunk", "created": .int(created), "model": .string(model),
                                          "choices": [["index": 0, "delta": delta, "finish_reason": .optional(finish), "logprobs": .null]]]
            for (k, v) in extra { o[k] = v }
            return "data: " + String(decoding: JSONValue.object(o).encoded(), as: UTF8.self) + "\n\n"
        }
        let includeUsage = chat.includeUsage
        return try await sse(chat.question, deadline: deadline, flag: flag) { event in
            switch event {
            case .token(let text, _):
                return text.isEmpty ? nil : chunk(["content": .string(text)], finish: nil)
            case .done(let o):
                var out = chunk([:], finish: Self.finishReason(o.answer), extra: ["anchorkv": Self.extensionJSON(o)])
                if includeUsage {
                    out += "data: " + String(decoding: JSONValue.object(["id": .string(id), "object": "chat.completion.chunk", "created": .int(created),
                                                                         "model": .string(model), "choices": [], "usage": Self.usage(o.answer)]).encoded(),
                                             as: UTF8.self) + "\n\n"
                }
                return out + "data: [DONE]\n\n"
            case .failed(let e):
                return "data: " + String(decoding: JSONValue.object(["error": e.json]).encoded(), as: UTF8.self) + "\n\ndata: [DONE]\n\n"
            case .started:
                return "data: " + String(decoding: JSONValue.object([
                    "id": .string(id), "object": "chat.completion.chunk", "created": .int(created), "model": .string(model),
                    "choices": [["index": 0, "delta": ["role": "assistant", "content": ""], "finish_reason": .null, "logprobs": .null]],
                ]).encoded(), as: UTF8.self) + "\n\n"
            }
        }
    }
}
