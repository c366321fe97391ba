import AnchorKVCore
import Foundation
import Hummingbird
import HummingbirdTesting
import TestSupport
import XCTest

/// POST /v1/chat/completions and GET /v1/models in OpenAI's shapes, answered from the store.
final class OpenAIRouteTests: XCTestCase {
    func testChatCompletionsAnswerFromTheStoreAsQueryDoes() async throws {
        let f = try Fixture()
        let model = f.kb.model.name
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river, Docs.press]])
            let models = try object(try await client.get("/v1/models"))
            XCTAssertEqual(models["object"] as? String, "list")
            XCTAssertEqual(((models["data"] as? [[String: Any]])?.first)?["id"] as? String, model)

            let question = "Who decoded the waggle dance of bees?"
            let messages: [[String: Any]] = [["role": "system", "content": "Answer briefly."], ["role": "user", "content": "Hello"],
                                             ["role": "assistant", "content": "Hi."], ["role": "user", "content": [["type": "text", "text": question]]]]
            let r = try await client.post("/v1/chat/completions", ["model": model, "messages": messages, "max_tokens": 12])
            XCTAssertEqual(r.status, .ok, String(buffer: r.body))
            let c = try object(r)
            XCTAssertEqual(c["object"] as? String, "chat.completion")
            XCTAssertTrue((c["id"] as? String ?? "").hasPrefix("chatcmpl-"))
            XCTAssertEqual(c["model"] as? String, model)
            let choice = try XCTUnwrap((c["choices"] as? [[String: Any]])?.first)
            let content = try XCTUnwrap((choice["message"] as? [String: Any])?["content"] as? String)
            XCTAssertTrue(["stop", "length"].contains(choice["finish_reason"] as? String ?? ""))
            // The last user message is the question; the answer is /v1/query's.
            let q = try object(try await client.post("/v1/query", ["question": question, "max_tokens": 12]))
            XCTAssertEqual(content, q["answer"] as? String)
            let usage = try XCTUnwrap(c["usage"] as? [String: Any])
            let ext = try XCTUnwrap(c["anchorkv"] as? [String: Any])
            XCTAssertEqual(usage["completion_tokens"] as? Int, q["answer_tokens"] as? Int)
            XCTAssertEqual(usage["prompt_tokens"] as? Int, (ext["anchors"] as? Int ?? 0) + (ext["question_tokens"] as? Int ?? 0))
            XCTAssertEqual(usage["total_tokens"] as? Int, (usage["prompt_tokens"] as? Int ?? 0) + (usage["completion_tokens"] as? Int ?? 0))
            XCTAssertEqual(((ext["citations"] as? [[String: Any]])?.first)?["document"] as? String, "bees")

            // Streamed: a role chunk, content deltas that add up to the same answer, a finish chunk, usage, [DONE].
            let s = try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": question]], "max_tokens": 12,
                                                                  "stream": true, "stream_options": ["include_usage": true]])
            XCTAssertEqual(s.status, .ok, String(buffer: s.body))
            XCTAssertEqual(s.headers[.contentType], "text/event-stream; charset=utf-8")
            let lines = String(buffer: s.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.last, "data: [DONE]")
            var streamed = "", finish: String?, role: String?, streamUsage: [String: Any]?
            for l in lines.dropLast() {
                XCTAssertTrue(l.hasPrefix("data: "), l)
                let chunk = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.dropFirst(6).utf8)) as? [String: Any])
                XCTAssertEqual(chunk["object"] as? String, "chat.completion.chunk")
                if let u = chunk["usage"] as? [String: Any] { streamUsage = u; continue }
                let ch = try XCTUnwrap((chunk["choices"] as? [[String: Any]])?.first)
                let delta = ch["delta"] as? [String: Any] ?? [:]
                if let r = delta["role"] as? String { role = r }
                streamed += delta["content"] as? String ?? ""
                if let fr = ch["finish_reason"] as? String { finish = fr }
            }
            XCTAssertEqual(role, "assistant")
            XCTAssertEqual(streamed, content)
            XCTAssertEqual(finish, choice["finish_reason"] as? String)
            XCTAssertEqual(streamUsage?["completion_tokens"] as? Int, usage["completion_tokens"] as? Int)

            // The extension names documents and k; sampling with a seed repeats itself.
            let named = try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": "Where does the Danube rise?"]],
                                                                      "anchorkv": ["documents": ["river"]], "max_tokens": 6])
            XCTAssertEqual(((try object(named)["anchorkv"] as? [String: Any])?["citations"] as? [[String: Any]])?.compactMap { $0["document"] as? String }, ["river"])
            let sampled = ["messages": [["role": "user", "content": question]], "max_tokens": 8, "temperature": 0.9, "top_p": 0.9, "seed": 7] as [String: Any]
            let a1 = try object(try await client.post("/v1/chat/completions", sampled))
            let a2 = try object(try await client.post("/v1/chat/completions", sampled))
            XCTAssertEqual(((a1["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String,
                           ((a2["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
        }
    }

    func testChatCompletionsRefuseWhatTheyCannotHonour() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.bees)
            let user = [["role": "user", "content": "bees?"]]
            try expectError(try await client.post("/v1/chat/completions", ["model": "gpt-4o", "messages": user]), .notFound, "model_not_found")
            try expectError(try await client.post("/v1/chat/completions", ["messages": []]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": [["role": "system", "content": "x"]]]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": [["role": "tool", "content": "x"]]]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": user, "n": 2]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": user, "stop": ["\n"]]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": user, "temperature": 3]), .badRequest, "invalid_input")
            try expectError(try await client.post("/v1/chat/completions", ["messages": user, "anchorkv": ["documents": ["nope"]]]), .notFound, "not_found")
            try expectError(try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": [["type": "image_url"]]]]]),
                            .badRequest, "invalid_input")
        }
    }
}
