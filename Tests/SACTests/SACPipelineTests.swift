import Foundation
import LLM
import Tensor
import XCTest
@testable import SAC

/// Properties of the encoder/decoder/KV-file path that need no golden: the uncompressed
/// baseline equals a plain forward pass, KV files round-trip, and mismatches are refused.
final class SACPipelineTests: XCTestCase {
    let text = """
        The Eddystone Lighthouse stands on the Eddystone Rocks, fourteen kilometres south of Rame Head in Cornwall. \
        The current structure, designed by James Douglass, was completed in 1882 and is the fourth lighthouse on the site.
        """

    /// Two fp32 paths to the same logits agree to fp32 rounding. (With BF16 prefill they agree
    /// only to bf16's: a last-bit difference in one path's attention can round an activation to
    /// the neighbouring bf16 value.)
    func testFullKVBaselineEqualsPlainForward() throws {
        Kernels.bf16Prefill = false
        defer { Kernels.bf16Prefill = Kernels.bf16Available }
        let model = try DefaultModel.load()
        let encoder = try SACEncoder(model: model, mode: .plain, ratio: 1)
        let ctx = try encoder.compress(text: text)
        XCTAssertEqual(ctx.anchorCount, ctx.contextLength)
        XCTAssertEqual(ctx.positions, (1...ctx.contextLength).map { Int32($0) })
        let decoder = try SACDecoder(model: model, adapter: nil)
        let question = "Who designed the current lighthouse?"
        let logits = try decoder.firstBlockLogits(ctx, question: question, exactDecode: true)  // fp32 LM head, as below

        // The same tokens through one ordinary causal pass at positions 1...
        let all = encoder.contextTokens(text) + decoder.layout.questionTokens(question, model: model)
        let session = model.makeSession(capacity: all.count)
        var opts = ForwardOptions(positions: (1...all.count).map { Int32($0) }, output: .last)
        opts.integerDecode = false
        let want = try session.forward(all, options: opts).logits
        let vocab = model.config.vocabSize
        var err = ErrorStats()
        err.add(Array(logits[(logits.count - vocab)...]), want)
        print("full-KV baseline vs plain forward: \(err)")
        XCTAssertLessThan(err.maxAbs, 2e-4)  // measured 3.1e-5
    }

    func testKVFileRoundTripAndAnswerFromFile() throws {
        let model = try DefaultModel.load()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let adapterPath = dir.appendingPathComponent("a.safetensors").path
        try writeRandomAdapter(for: model, ratio: 15, to: adapterPath)
        let adapter = try SACAdapter.load(path: adapterPath, for: model)
        XCTAssertEqual(adapter.ratio, 15)
        XCTAssertEqual(adapter.memSize, 34)
        let encoder = try SACEncoder(model: model, mode: .adapter(adapter))
        let ctx = try encoder.compress(text: text)
        XCTAssertEqual(ctx.windowAnchorCounts, [UniformAnchors.count(windowLength: ctx.contextLength, ratio: 15)])
        XCTAssertEqual(ctx.adapterFingerprint, adapter.fingerprint)

        let f32 = dir.appendingPathComponent("c32.akv").path, f16 = dir.appendingPathComponent("c16.akv").path
        try KVFile.write(ctx, to: f32, dtype: .f32)
        try KVFile.write(ctx, to: f16, dtype: .f16)
        XCTAssertTrue(KVFile.looksLikeKVFile(f32))
        XCTAssertFalse(KVFile.looksLikeKVFile(adapterPath))
        XCTAssertEqual(try KVFile.read(f32).context, ctx, "f32 KV files are bit-exact")
        let half = try KVFile.read(f16).context
        var err = ErrorStats()
        for l in 0..<ctx.layerCount { err.add(half.keys[l], ctx.keys[l], floor: 1); err.add(half.values[l], ctx.values[l], floor: 1) }
        XCTAssertLessThan(err.maxRel, 1e-3, "fp16 rounding: \(err)")

        let decoder = try SACDecoder(model: model, adapter: adapter)
        let a = try decoder.answer(ctx, question: "When was it completed?", maxTokens: 6)
        let b = try decoder.answer(try KVFile.read(f32).context, question: "When was it completed?", maxTokens: 6)
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertFalse(a.tokens.isEmpty)
    }

    func testMismatchesAreRefused() throws {
        let model = try DefaultModel.load()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let p1 = dir.appendingPathComponent("a1.safetensors").path, p2 = dir.appendingPathComponent("a2.safetensors").path
        try writeRandomAdapter(for: model, ratio: 5, seed: 1, to: p1)
        try writeRandomAdapter(for: model, ratio: 5, seed: 2, to: p2)
        let a1 = try SACAdapter.load(path: p1, for: model), a2 = try SACAdapter.load(path: p2, for: model)
        XCTAssertNotEqual(a1.fingerprint, a2.fingerprint)
        var ctx = try SACEncoder(model: model, mode: .adapter(a1)).compress(text: text)

        XCTAssertThrowsError(try SACDecoder(model: model, adapter: a2).answer(ctx, question: "q?", maxTokens: 2)) {
            guard case SACError.adapterMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try SACDecoder(model: model, adapter: nil).answer(ctx, question: "q?", maxTokens: 2))
        ctx.modelFingerprint = "00000000000000000000000000000000"
        XCTAssertThrowsError(try SACDecoder(model: model, adapter: a1).answer(ctx, question: "q?", maxTokens: 2)) {
            guard case SACError.modelMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try SACEncoder(model: model, mode: .adapter(a1), ratio: 15)) {
            XCTAssertTrue("\($0)".contains("trained for ratio 5"), "\($0)")
        }
    }

    func testBadAdapterFilesGiveClearErrors() throws {
        let model = try DefaultModel.load()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func loadError(_ name: String, overrides: [String: String?] = [:], drop: String? = nil) throws -> String {
            let p = dir.appendingPathComponent(name).path
            try writeRandomAdapter(for: model, ratio: 5, to: p, metadataOverrides: overrides, dropTensor: drop)
            do { _ = try SACAdapter.load(path: p, for: model); return "loaded" } catch { return "\(error)" }
        }
        XCTAssertTrue(try loadError("m.st", overrides: ["base_model": "ffffffffffffffffffffffffffffffff"]).contains("made for base model ffff"))
        XCTAssertTrue(try loadError("d.st", drop: "layers.7.v_proj.lora_B").contains("'layers.7.v_proj.lora_B' is missing"))
        XCTAssertTrue(try loadError("f.st", overrides: ["format": "something-else"]).contains("metadata 'format'"))
        XCTAssertTrue(try loadError("v.st", overrides: ["format_version": "9"]).contains("format_version 9"))
        XCTAssertTrue(try loadError("r.st", overrides: ["lora_rank": "3"]).contains("shape"))
        XCTAssertTrue(try loadError("s.st", overrides: ["lora_scale": nil]).contains("lora_scale"))
        // Hostile but well-formed: claims checked against the model and against each other.
        XCTAssertTrue(try loadError("n.st", overrides: ["lora_scale": "nan"]).contains("must be a finite number"))
        let c = model.config
        XCTAssertTrue(try loadError("w.st", overrides: ["window": "100000000"]).contains("window 100000000 is longer than the model's context (\(c.contextLength) tokens)"))
        XCTAssertTrue(try loadError("k.st", overrides: ["mem_size": "10"]).contains("mem_size 10 role tokens, but a window of 510 tokens at ratio 5 has 102 anchors"))
        XCTAssertTrue(try loadError("b.st", overrides: ["bos_id": "\(c.vocabSize)"]).contains("bos_id '\(c.vocabSize)' is not a token id of the model"))
        XCTAssertTrue(try loadError("e.st", overrides: ["eos_id": "-1"]).contains("eos_id '-1' is not a token id"))
        XCTAssertTrue(try loadError("q.st", overrides: ["ratio": "70000"]).contains("ratio 70000 is above 65535"))
        XCTAssertEqual(try loadError("ok.st"), "loaded", "the honest file loads")

        // Truncated file and a non-adapter file.
        let good = dir.appendingPathComponent("good.st").path
        try writeRandomAdapter(for: model, ratio: 5, to: good)
        let data = try Data(contentsOf: URL(fileURLWithPath: good))
        let cut = dir.appendingPathComponent("cut.st").path
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try SACAdapter.load(path: cut, for: model)) { XCTAssertTrue("\($0)".contains("invalid SAC adapter"), "\($0)") }
        XCTAssertThrowsError(try SACAdapter.load(path: dir.appendingPathComponent("nope").path, for: model))
    }

    func testCorruptKVFilesAreRejected() throws {
        let model = try DefaultModel.load()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ctx = try SACEncoder(model: model, mode: .plain, ratio: 5).compress(text: text)
        let p = dir.appendingPathComponent("c.akv").path
        try KVFile.write(ctx, to: p)
        let data = try Data(contentsOf: URL(fileURLWithPath: p))
        let cut = dir.appendingPathComponent("cut.akv").path
        try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try KVFile.read(cut)) { XCTAssertTrue("\($0)".contains("invalid KV file"), "\($0)") }
        XCTAssertThrowsError(try KVFile.read(dir.appendingPathComponent("missing.akv").path))
    }
}
