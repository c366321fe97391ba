import Foundation
import XCTest
@testable import LLM

/// The Hugging Face path (config.json with llama3 rope scaling, GQA, tied embeddings, mixed
/// F32/F16/BF16 safetensors, tokenizer.json) on a tiny random Llama made by tools/reference.
final class TinyLlamaTests: XCTestCase {
    func testHuggingFaceDirectoryMatchesReference() throws {
        let model = try LlamaModel.load(path: Goldens.path("tiny-llama"))
        let g = try Goldens.json("tiny-logits.json")
        let c = model.config
        XCTAssertEqual(c.headCount, 4)
        XCTAssertEqual(c.kvHeadCount, 2)
        XCTAssertTrue(c.tiedEmbeddings)
        XCTAssertEqual(c.ropeScaling?.type, "llama3")
        let inv = c.ropeInverseFrequencies()
        // The goldens keep 6 significant digits.
        for (a, b) in zip(inv, (g["rope_inv_freq_llama3"] as! [NSNumber]).map(\.doubleValue)) { XCTAssertEqual(a, b, accuracy: 1e-5 * b) }
        XCTAssertNotEqual(inv, (g["rope_inv_freq_unscaled"] as! [NSNumber]).map(\.doubleValue))

        var err = ErrorStats()
        let V = c.vocabSize
        for p in g["prompts"] as! [[String: Any]] {
            let ids = ints(p["prompt_ids"]), greedy = ints(p["greedy_ids"])
            XCTAssertEqual(model.tokenizer.encode(p["text"] as! String), ids)
            let s = model.makeSession(capacity: ids.count + greedy.count)
            var fp32 = ForwardOptions(output: .all)
            fp32.bf16Prefill = false  // the reference tolerance is fp32's
            let r = try s.forward(ids, options: fp32)
            let want = matrix(p["prompt_logits"])
            for t in 0..<ids.count { err.add(Array(r.logits[t * V..<(t + 1) * V]), want[t], floor: 1e-2) }
            let gl = matrix(p["greedy_logits"])
            var next = Sampler.argmax(Array(r.logits[(ids.count - 1) * V..<ids.count * V]).withUnsafeBufferPointer { $0 })
            for i in 0..<greedy.count {
                XCTAssertEqual(next, greedy[i], "greedy step \(i)")
                let step = try s.forward([greedy[i]])
                err.add(step.logits, gl[i], floor: 1e-2)
                next = step.logits.withUnsafeBufferPointer { Sampler.argmax($0) }
            }
        }
        print("tiny HF Llama vs reference: logits \(err)")
        XCTAssertLessThan(err.maxAbs, 2e-5, "\(err)")  // measured 5.1e-6
    }

    func testBrokenHuggingFaceDirectoriesAreTypedErrors() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("akv-tiny-\(UUID().uuidString)")
        try fm.copyItem(atPath: Goldens.path("tiny-llama"), toPath: dir.path)
        defer { try? fm.removeItem(at: dir) }
        // Weights truncated.
        let st = dir.appendingPathComponent("model.safetensors")
        let full = try Data(contentsOf: st)
        try full.prefix(full.count - 100).write(to: st)
        XCTAssertThrowsError(try LlamaModel.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        try full.write(to: st)
        // An architecture AnchorKV does not run.
        let cfgURL = dir.appendingPathComponent("config.json")
        let cfg = try String(contentsOf: cfgURL, encoding: .utf8)
        try cfg.replacingOccurrences(of: "LlamaForCausalLM", with: "MistralForCausalLM").replacingOccurrences(of: "\"llama\"", with: "\"mistral\"")
            .write(to: cfgURL, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LlamaModel.load(path: dir.path)) { XCTAssertEqual($0 as? LLMError, .unsupportedArchitecture("mistral")) }
        // A tokenizer with more tokens than the model has embedding rows (300 tokens, vocab_size 200).
        try cfg.replacingOccurrences(of: "\"vocab_size\": 300", with: "\"vocab_size\": 200").write(to: cfgURL, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LlamaModel.load(path: dir.path)) {
            XCTAssertTrue("\($0)".contains("the tokenizer has 300 tokens, more than the model's vocab_size 200"), "\($0)")
        }
        try fm.removeItem(at: cfgURL)
        XCTAssertThrowsError(try LlamaModel.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
        XCTAssertThrowsError(try LlamaModel.load(path: "/nonexistent/model")) { XCTAssertEqual($0 as? LLMError, .modelNotFound("/nonexistent/model")) }
    }
}

final class SamplingTests: XCTestCase {
    func testGreedyTemperatureTopPAndSeeds() {
        let logits: [Float] = [1.0, 3.0, 2.0, 0.5]
        logits.withUnsafeBufferPointer { l in
            var greedy = Sampler(.greedy)
            XCTAssertEqual(greedy.sample(l), 1)
            // Tiny nucleus keeps only the top token.
            var nucleus = Sampler(SamplingParameters(temperature: 1, topP: 0.01, seed: 3))
            for _ in 0..<20 { XCTAssertEqual(nucleus.sample(l), 1) }
            // Same seed, same stream; frequencies follow softmax(logits).
            var a = Sampler(SamplingParameters(temperature: 1, topP: 1, seed: 42)), b = a
            var counts = [Int](repeating: 0, count: 4)
            for _ in 0..<20000 {
                let x = a.sample(l)
                XCTAssertEqual(x, b.sample(l))
                counts[Int(x)] += 1
            }
            let z = logits.reduce(0.0) { $0 + exp(Double($1)) }
            for i in 0..<4 {
                let p = exp(Double(logits[i])) / z
                XCTAssertEqual(Double(counts[i]) / 20000, p, accuracy: 4 * (p * (1 - p) / 20000).squareRoot() + 1e-3, "token \(i)")
            }
        }
    }
}
