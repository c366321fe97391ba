import Foundation
import XCTest
@testable import Tokenizer

final class TokenizerErrorTests: XCTestCase {
    let bytes: [String] = (0..<256).map { ByteLevel.encode([UInt8($0)]) }

    func expectError(_ body: () throws -> BPETokenizer, _ check: (TokenizerError) -> Bool,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected TokenizerError", file: file, line: line)
        } catch let e as TokenizerError {
            XCTAssertTrue(check(e), "unexpected error: \(e)", file: file, line: line)
            XCTAssertFalse(e.description.isEmpty)
        } catch {
            XCTFail("expected TokenizerError, got \(error)", file: file, line: line)
        }
    }

    func testBadMerges() {
        expectError({ try BPETokenizer(tokens: self.bytes, merges: ["a"], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) {
            if case .badMergeLine(1, "a") = $0 { return true }; return false
        }
        expectError({ try BPETokenizer(tokens: self.bytes, merges: ["a b c"], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) {
            if case .badMergeLine = $0 { return true }; return false
        }
        // "a b" needs "ab" in the vocabulary.
        expectError({ try BPETokenizer(tokens: self.bytes, merges: ["a b"], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) {
            if case .mergeTokenMissing(1, "ab") = $0 { return true }; return false
        }
        expectError({ try BPETokenizer(tokens: self.bytes, merges: ["xyz b"], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) {
            if case .mergeTokenMissing(1, "xyz") = $0 { return true }; return false
        }
    }

    func testBadMetadata() {
        expectError({ try BPETokenizer(tokens: [], merges: [], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) { $0 == .emptyVocabulary }
        expectError({ try BPETokenizer(tokens: self.bytes, merges: [], tokenTypes: [1, 1], preTokenizer: .gpt2,
                                       bosID: nil, eosID: nil, unknownID: nil, addBOS: false) }) {
            $0 == .tokenTypeCountMismatch(tokens: 256, types: 2)
        }
        expectError({ try BPETokenizer(tokens: self.bytes, merges: [], tokenTypes: nil, preTokenizer: .gpt2,
                                       bosID: 300, eosID: nil, unknownID: nil, addBOS: false) }) {
            if case .specialIDOutOfRange = $0 { return true }; return false
        }
    }

    func testMinimalTokenizerWorks() throws {
        let tok = try BPETokenizer(tokens: bytes + ["ab", "<s>"], merges: ["a b"],
                                   tokenTypes: [Int32](repeating: 1, count: 257) + [3], preTokenizer: .gpt2,
                                   bosID: 257, eosID: nil, unknownID: nil, addBOS: true)
        XCTAssertEqual(tok.encode("ab<s>"), [257, 256, 257])
        XCTAssertEqual(tok.encode("ab<s>", parseSpecial: false, addBOS: false).count, 4)
        XCTAssertEqual(tok.decode(tok.encode("héllo wörld ✓")), "<s>héllo wörld ✓")
    }

    func json(_ s: String) -> Data { Data(s.utf8) }

    func testMalformedTokenizerJSON() throws {
        let ok = try Fixtures.data("tiny-llama3-tokenizer.json")
        XCTAssertNoThrow(try BPETokenizer.fromTokenizerJSON(ok))
        let obj = try JSONSerialization.jsonObject(with: ok) as! [String: Any]

        func mutate(_ f: (inout [String: Any]) -> Void) throws -> Data {
            var o = obj
            f(&o)
            return try JSONSerialization.data(withJSONObject: o)
        }
        func load(_ d: Data) -> () throws -> BPETokenizer { { try BPETokenizer.fromTokenizerJSON(d) } }

        expectError(load(json("not json"))) { if case .malformedTokenizerJSON = $0 { return true }; return false }
        expectError(load(json("[1,2]"))) { if case .malformedTokenizerJSON = $0 { return true }; return false }
        expectError(load(json("{}"))) { if case .malformedTokenizerJSON = $0 { return true }; return false }
        expectError(load(Data(ok.prefix(ok.count / 2)))) { if case .malformedTokenizerJSON = $0 { return true }; return false }
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]; m["type"] = "WordPiece"; o["model"] = m
        })) { $0 == .unsupportedModelType("WordPiece") }
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]; m["vocab"] = [1, 2]; o["model"] = m
        })) { if case .malformedTokenizerJSON = $0 { return true }; return false }
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]; m["merges"] = ["Ġ t", "bad"]; o["model"] = m
        })) { if case .badMergeLine(2, "bad") = $0 { return true }; return false }
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]; m["merges"] = [["Ġ", "nope-not-here"]]; o["model"] = m
        })) { if case .mergeTokenMissing = $0 { return true }; return false }
        expectError(load(try mutate { o in o["pre_tokenizer"] = ["type": "Whitespace"] })) {
            if case .unsupportedConfiguration = $0 { return true }; return false
        }
        expectError(load(try mutate { o in o["pre_tokenizer"] = NSNull() })) {
            if case .unsupportedConfiguration = $0 { return true }; return false
        }
        expectError(load(try mutate { o in o["normalizer"] = ["type": "NFC"] })) {
            if case .unsupportedConfiguration = $0 { return true }; return false
        }
        expectError(load(try mutate { o in o["added_tokens"] = [["id": "x"]] })) {
            if case .malformedTokenizerJSON = $0 { return true }; return false
        }
        // Hostile but well-formed: one token at a far id (the table would be sized by the claim,
        // full of tokens that decode to nothing).
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]
            var v = m["vocab"] as! [String: Any]
            v["far-away"] = 9_999_999
            m["vocab"] = v; o["model"] = m
        })) { e in
            guard case .malformedTokenizerJSON(let why) = e else { return false }
            return why.contains("token ids run to 9999999 but only") && why.contains("must cover 0..<count")
        }
        expectError(load(try mutate { o in
            var m = o["model"] as! [String: Any]
            var v = m["vocab"] as! [String: Any]
            v["negative"] = -4
            m["vocab"] = v; o["model"] = m
        })) { if case .malformedTokenizerJSON = $0 { return true }; return false }
    }

    func testPreTokenizerDetection() throws {
        let gpt2 = try JSONSerialization.jsonObject(with: json(#"{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"#))
        let data = try JSONSerialization.data(withJSONObject: gpt2)
        let v = try JSONDecoder().decode(JSONValue.self, from: data)
        XCTAssertEqual(try BPETokenizer.detectPreTokenizer(v), .gpt2)
    }

    func testGPT2Scanner() {
        // Pieces of the GPT-2 regex, checked against HF ByteLevel(use_regex=true) by hand.
        func pieces(_ s: String, _ kind: PreTokenizerKind) -> [String] {
            let sc = s.unicodeScalars.map(\.value)
            let cls = sc.map(CharClass.of)
            var ends: [Int] = []
            sc.withUnsafeBufferPointer { a in cls.withUnsafeBufferPointer { b in
                PreTokenizerScanner(kind: kind).split(sc: a, cls: b, lo: 0, hi: sc.count, ends: &ends)
            } }
            var out: [String] = []
            var start = 0
            for e in ends {
                var u = String.UnicodeScalarView()
                for v in sc[start..<e] { u.append(Unicode.Scalar(v)!) }
                out.append(String(u))
                start = e
            }
            return out
        }
        XCTAssertEqual(pieces("Hello  world's 123!!", .gpt2), ["Hello", " ", " world", "'s", " 123", "!!"])
        XCTAssertEqual(pieces("a  \n\n  b", .gpt2), ["a", "  \n\n ", " b"])
        XCTAssertEqual(pieces("a1 22", .smollm), ["a", "1", " ", "2", "2"])
        XCTAssertEqual(pieces("I'LL 12345\r\n\r\n  x", .llama3), ["I", "'LL", " ", "123", "45", "\r\n\r\n", " ", " x"])
    }
}
