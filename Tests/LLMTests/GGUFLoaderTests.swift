import Foundation
import TestSupport
import XCTest
@testable import LLM

/// GGUF metadata that is well-formed but describes an impossible model: a typed error, never a trap.
final class GGUFLoaderTests: XCTestCase {
    func load(embedding: UInt32, heads: UInt32, ropeDims: UInt32? = nil) throws -> Result<LlamaModel, Error> {
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama")), ("tokenizer.ggml.tokens", .strings(["a", "b"])),
                      ("llama.embedding_length", .uint32(embedding)), ("llama.attention.head_count", .uint32(heads)),
                      ("llama.feed_forward_length", .uint32(64)), ("llama.block_count", .uint32(1))]
        if let ropeDims { b.metadata.append(("llama.rope.dimension_count", .uint32(ropeDims))) }
        let p = try b.write()
        defer { try? FileManager.default.removeItem(atPath: p) }
        return Result { try LlamaModel.load(path: p) }
    }

    func assertInvalidConfig(_ r: Result<LlamaModel, Error>, _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .failure(let e) = r else { return XCTFail("loaded", file: file, line: line) }
        guard case LLMError.invalidConfig(let why) = e else { return XCTFail("\(e)", file: file, line: line) }
        XCTAssertTrue(why.contains(phrase), why, file: file, line: line)
    }

    func testZeroHeadsIsAConfigErrorNotADivisionByZero() throws {
        assertInvalidConfig(try load(embedding: 64, heads: 0), "attention.head_count is 0")
        // With an explicit head size the count is still refused before anything divides by it.
        assertInvalidConfig(try load(embedding: 64, heads: 0, ropeDims: 16), "attention.head_count is 0")
    }

    func testAHiddenSizeNotDivisibleByTheHeadsIsRefused() throws {
        assertInvalidConfig(try load(embedding: 100, heads: 3), "not a positive multiple of attention.head_count 3")
    }

    func testAValidHeadCountGetsPastTheHeadChecks() throws {
        // 64 / 4 heads is fine: loading goes on and stops later, at the first missing tensor.
        guard case .failure(let e) = try load(embedding: 64, heads: 4) else { return XCTFail("loaded a model without tensors") }
        XCTAssertFalse("\(e)".contains("head_count"), "\(e)")
    }
}
