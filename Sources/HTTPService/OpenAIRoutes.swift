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
        let chat = try RequestBodies.chat(try JSONValue.parseObject(try await Self.body(request, limit: config.maxBodyBytes)), modelID: modelID, config: config)
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
