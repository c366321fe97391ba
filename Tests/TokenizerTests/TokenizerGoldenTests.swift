import Foundation
import XCTest
@testable import Tokenizer

struct GoldenCase: Decodable {
    let text: String
    let ids: [Int32]
    let ids_plain: [Int32]
    let decoded: String
    let decoded_skip_special: String
}

struct StreamingCase: Decodable {
    let text: String
    let ids: [Int32]
    let decoded: String
    let pieces: [String]
}

struct ChatCase: Decodable {
    struct Message: Decodable { let role: String; let content: String }
    let messages: [Message]
    let add_generation_prompt: Bool
    let no_default_system: Bool?
    let rendered: String
}

struct Goldens: Decodable {
    struct Header: Decodable { let generator: String; let tokenizers_version: String; let date: String }
    struct Chat: Decodable { let default_system: String; let cases: [ChatCase] }
    let header: Header
    let chatml: Chat
    let smollm2: [GoldenCase]
    let tiny_llama3: [GoldenCase]
    let streaming: [StreamingCase]
    let fuzz_smollm2: [GoldenCase]
    let fuzz_tiny_llama3: [GoldenCase]
    let smollm2_vocab_gpt2: [GoldenCase]
    let smollm2_vocab_llama3: [GoldenCase]
}

struct SmolVocab: Decodable {
    let tokens: [String]
    let merges: [String]
    let token_types: [Int32]
    let bos: Int32
    let eos: Int32
    let unk: Int32
    let add_bos: Bool
    let pre: String
}

enum Fixtures {
    static let dir: URL = Bundle.module.url(forResource: "Goldens", withExtension: nil)!

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: dir.appendingPathComponent(name))
    }

    static let goldens: Goldens = try! JSONDecoder().decode(Goldens.self, from: data("tokenizer_goldens.json"))

    /// SmolLM2 tokenizer built the way the GGUF loader builds it (tokens, merges, token types).
    static let smolVocab: SmolVocab = try! JSONDecoder().decode(SmolVocab.self, from: data("smollm2-vocab.json"))

    static func smolVocabTokenizer(_ kind: PreTokenizerKind) -> BPETokenizer {
        let v = smolVocab
        return try! BPETokenizer(tokens: v.tokens, merges: v.merges, tokenTypes: v.token_types, preTokenizer: kind,
                                 bosID: v.bos, eosID: v.eos, unknownID: v.unk, addBOS: v.add_bos)
    }

    static let smol: BPETokenizer = {
        precondition(smolVocab.pre == "smollm")
        return smolVocabTokenizer(.smollm)
    }()

    /// Same vocabulary, but every word of two or more bytes goes through the heap-based merge.
    static let smolHeap: BPETokenizer = {
        let v = try! JSONDecoder().decode(SmolVocab.self, from: data("smollm2-vocab.json"))
        let pairs = v.merges.map { m -> (String, String) in
            let p = m.split(separator: " ")
            return (String(p[0]), String(p[1]))
        }
        let added = v.token_types.enumerated().filter { $0.element == 3 || $0.element == 4 }.map { (id: Int32($0.offset), special: true) }
        return try! BPETokenizer(tokens: v.tokens, mergePairs: pairs, added: added, preTokenizer: .smollm,
                                 ignoreMerges: false, bosID: v.bos, eosID: v.eos, unknownID: v.unk, addBOS: false,
                                 heapThreshold: 0)
    }()

    static let tiny: BPETokenizer = try! BPETokenizer.fromTokenizerJSON(data("tiny-llama3-tokenizer.json"))
}

final class TokenizerGoldenTests: XCTestCase {
    func show(_ s: String) -> String { s.debugDescription }

    func checkCases(_ tok: BPETokenizer, _ cases: [GoldenCase], name: String) {
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        for c in cases {
            let ids = tok.encode(c.text)
            XCTAssertEqual(ids, c.ids, "\(name) ids for \(show(c.text))")
            let plain = tok.encode(c.text, parseSpecial: false)
            XCTAssertEqual(plain, c.ids_plain, "\(name) plain ids for \(show(c.text))")
            XCTAssertEqual(tok.decode(c.ids), c.decoded, "\(name) decode for \(show(c.text))")
            XCTAssertEqual(tok.decode(c.ids, skipSpecial: true), c.decoded_skip_special,
                           "\(name) decode(skipSpecial) for \(show(c.text))")
            XCTAssertEqual(tok.decode(ids), c.text, "\(name) round trip for \(show(c.text))")
        }
    }

    func testHeader() {
        let h = Fixtures.goldens.header
        XCTAssertEqual(h.generator, "tools/reference/make_tokenizer_goldens.py")
        XCTAssertFalse(h.tokenizers_version.isEmpty)
    }

    func testSmolLM2KnownIDs() {
        let tok = Fixtures.smol
        XCTAssertEqual(tok.encode("Hello world"), [19556, 905])
        XCTAssertEqual(tok.vocabularySize, 49152)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.id(of: "<|im_start|>"), 1)
        XCTAssertEqual(tok.token(2), "<|im_end|>")
        XCTAssertTrue(tok.isSpecial(0))
        XCTAssertTrue(tok.isSpecial(16))
        XCTAssertFalse(tok.isSpecial(17))
        XCTAssertFalse(tok.isSpecial(-1))
        XCTAssertFalse(tok.isSpecial(1_000_000))
        XCTAssertNil(tok.token(-5))
        XCTAssertNil(tok.token(49152))
        XCTAssertEqual(tok.encode("Hi", addBOS: true).first, 1)
        XCTAssertEqual(tok.encode("Hi").first, tok.encode("Hi", addBOS: false).first)
        XCTAssertEqual(tok.decode([-1, 999_999, 19556]), "Hello")
    }

    func testSmolLM2Goldens() {
        checkCases(Fixtures.smol, Fixtures.goldens.smollm2, name: "smollm2")
    }

    func testSmolLM2Fuzz() {
        checkCases(Fixtures.smol, Fixtures.goldens.fuzz_smollm2, name: "smollm2-fuzz")
    }

    func testTinyLlama3Fuzz() {
        checkCases(Fixtures.tiny, Fixtures.goldens.fuzz_tiny_llama3, name: "tiny-llama3-fuzz")
    }

    func testHeapMergeMatchesGoldens() {
        checkCases(Fixtures.smolHeap, Fixtures.goldens.smollm2, name: "smollm2-heap")
        checkCases(Fixtures.smolHeap, Fixtures.goldens.fuzz_smollm2, name: "smollm2-heap-fuzz")
    }

    func testLongWordsStayFast() {
        // One 200 kB "word": must not be quadratic.
        let text = String(repeating: "abcdefghij", count: 20_000)
        let start = Date()
        let ids = Fixtures.smol.encode(text)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(Fixtures.smol.decode(ids), text)
        let a = String(repeating: "a", count: 5000)
        XCTAssertEqual(Fixtures.smol.encode(a), Fixtures.smolHeap.encode(a))
    }

    func testGPT2PreTokenizerGoldens() {
        checkCases(Fixtures.smolVocabTokenizer(.gpt2), Fixtures.goldens.smollm2_vocab_gpt2, name: "gpt2")
    }

    func testLlama3PreTokenizerOnSmolVocabGoldens() {
        let tok = Fixtures.smolVocabTokenizer(.llama3)
        XCTAssertTrue(tok.ignoreMerges)
        checkCases(tok, Fixtures.goldens.smollm2_vocab_llama3, name: "llama3-smolvocab")
    }

    func testSmolLM2FromTokenizerJSON() throws {
        let tok = try BPETokenizer.fromTokenizerJSON(Fixtures.data("smollm2-tokenizer.json"))
        XCTAssertEqual(tok.preTokenizer, .smollm)
        XCTAssertEqual(tok.vocabularySize, 49152)
        checkCases(tok, Fixtures.goldens.smollm2, name: "smollm2-json")
    }

    func testTinyLlama3Goldens() {
        let tok = Fixtures.tiny
        XCTAssertEqual(tok.preTokenizer, .llama3)
        XCTAssertTrue(tok.ignoreMerges)
        XCTAssertEqual(tok.vocabularySize, 400)
        XCTAssertEqual(tok.bosID, 0)
        XCTAssertEqual(tok.eosID, 1)
        XCTAssertTrue(tok.isSpecial(2))
        checkCases(tok, Fixtures.goldens.tiny_llama3, name: "tiny-llama3")
    }

    func testStreamingDecoder() {
        let tok = Fixtures.smol
        for c in Fixtures.goldens.streaming {
            XCTAssertEqual(tok.encode(c.text), c.ids)
            var dec = tok.makeStreamingDecoder()
            var out = ""
            var heldBack = false
            for (n, id) in c.ids.enumerated() {
                let piece = dec.append(id)
                XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"), "U+FFFD mid-stream in \(show(c.text))")
                if dec.pendingByteCount > 0 { heldBack = true }
                out += piece
                // Single-token decode matches HF (lossy per token).
                XCTAssertEqual(tok.decode([id]), c.pieces[n])
            }
            out += dec.flush()
            XCTAssertEqual(out, c.decoded)
            XCTAssertEqual(out, tok.decode(c.ids))
            XCTAssertTrue(heldBack, "expected a multi-byte character split across tokens in \(show(c.text))")
        }
    }

    func testStreamingFlushIncomplete() throws {
        let tok = Fixtures.smol
        // "😀" is F0 9F 98 80; feed the byte tokens of its first two bytes only.
        let b0 = try XCTUnwrap(tok.id(of: ByteLevel.encode([0xF0])))
        let b1 = try XCTUnwrap(tok.id(of: ByteLevel.encode([0x9F])))
        let b2 = try XCTUnwrap(tok.id(of: ByteLevel.encode([0x98])))
        let b3 = try XCTUnwrap(tok.id(of: ByteLevel.encode([0x80])))
        var d = tok.makeStreamingDecoder()
        XCTAssertEqual(d.append(19556), "Hello")
        XCTAssertEqual(d.append(b0), "")
        XCTAssertEqual(d.append(b1), "")
        XCTAssertEqual(d.flush(), "\u{FFFD}")
        XCTAssertEqual(d.flush(), "")
        // Completed character.
        XCTAssertEqual(d.append(b0) + d.append(b1) + d.append(b2), "")
        XCTAssertEqual(d.append(b3), "😀")
        // A stray continuation byte is invalid at once: emitted as U+FFFD immediately, like full decode.
        XCTAssertEqual(d.append(b3), "\u{FFFD}")
        // Skipping specials.
        var s = tok.makeStreamingDecoder(skipSpecial: true)
        XCTAssertEqual(s.append(1) + s.append(19556) + s.append(2) + s.flush(), "Hello")
    }

    func testChatML() {
        let g = Fixtures.goldens.chatml
        XCTAssertEqual(g.default_system, ChatTemplate.smolLM2DefaultSystem)
        for c in g.cases {
            let t = ChatTemplate.chatML(defaultSystem: (c.no_default_system ?? false) ? nil : g.default_system)
            let msgs = c.messages.map { ChatMessage(role: $0.role, content: $0.content) }
            XCTAssertEqual(t.render(msgs, addGenerationPrompt: c.add_generation_prompt), c.rendered)
        }
        let t = ChatTemplate.chatML(defaultSystem: ChatTemplate.smolLM2DefaultSystem)
        XCTAssertEqual(
            t.render([ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(t.render([], addGenerationPrompt: false), "")
    }

    func testConcurrentEncode() {
        let tok = Fixtures.smol
        let cases = Fixtures.goldens.smollm2
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for c in cases { XCTAssertEqual(tok.encode(c.text), c.ids) }
        }
    }

    /// ~1 MB of varied text: golden cases plus pseudo-random words (many distinct, so the word cache
    /// does not hide the BPE cost). Prints throughput; not an assertion.
    static func speedText() -> String {
        var rng: UInt64 = 0x9E3779B97F4A7C15
        func next() -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: rng >> 33)
        }
        let syllables = ["an", "chor", "ka", "ve", "to", "ken", "iz", "er", "ing", "the", "qu", "ick", "br", "own",
                         "fox", "ju", "mp", "s", "la", "zy", "dog", "é", "ü", "日本", "語", "мир", "при", "вет"]
        let punct = [" ", " ", " ", " ", " ", ", ", ". ", "\n", "  ", " (", ") ", ": ", " 1984 ", " 3.14 ", "'s "]
        var text = Fixtures.goldens.smollm2.map(\.text).joined(separator: "\n")
        text.reserveCapacity(1_100_000)
        while text.utf8.count < 1_000_000 {
            var w = ""
            for _ in 0..<(1 + next() % 4) { w += syllables[next() % syllables.count] }
            if next() % 7 == 0 { w = w.capitalized }
            text += w
            text += punct[next() % punct.count]
        }
        return text
    }

    func testEncodeSpeed() {
        let tok = Fixtures.smol
        let text = Self.speedText()
        let start = Date()
        let ids = tok.encode(text)
        let secs = Date().timeIntervalSince(start)
        let mb = Double(text.utf8.count) / 1e6
        print(String(format: "[speed] encoded %.2f MB into %d tokens in %.3f s: %.2f MB/s, %.0f tokens/s",
                     mb, ids.count, secs, mb / secs, Double(ids.count) / secs))
        let start2 = Date()
        _ = tok.encode(text)
        let secs2 = Date().timeIntervalSince(start2)
        print(String(format: "[speed] again with warm word cache: %.2f MB/s", mb / secs2))
        XCTAssertEqual(tok.decode(ids), text)
    }
}
