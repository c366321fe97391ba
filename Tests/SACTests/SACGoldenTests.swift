import Foundation
import LLM
import ModelFormats
import Tensor
import XCTest
@testable import SAC

/// The Swift SAC encoder and decoder against the independent float64 reference
/// (tools/reference/sac_ref.py) on the real default model with seeded random adapters:
/// a one-window context (r=5), a three-window context with a 23-token last window (r=15),
/// and the no-adapter baseline.
final class SACGoldenTests: XCTestCase {
    struct Case {
        let json: [String: Any]
        var name: String { json["name"] as! String }
    }

    func cases() throws -> [Case] { (try Goldens.json("sac-goldens.json")["cases"] as! [[String: Any]]).map(Case.init) }

    func setUp(_ c: Case, model: LlamaModel) throws -> (SACAdapter?, CompressedContext) {
        let adapter = try (c.json["adapter"] as? String).map { try SACAdapter.load(path: Goldens.path($0), for: model) }
        let encoder = try SACEncoder(model: model, mode: adapter.map { .adapter($0) } ?? .plain, ratio: c.json["ratio"] as? Int)
        let ids = encoder.contextTokens(c.json["text"] as! String)
        XCTAssertEqual(ids, ints(c.json["encoder_ids"]), "\(c.name): encoder input tokens")
        return (adapter, try encoder.compress(tokens: ints(c.json["encoder_ids"])))
    }

    func testFingerprintMatchesReference() throws {
        let model = try DefaultModel.load()
        XCTAssertEqual(try model.fingerprint(), try Goldens.json("sac-goldens.json")["base_model_fingerprint"] as? String)
    }

    /// The fp32 path (BF16 prefill off) at fp32 tolerances.
    override func setUp() {
        super.setUp()
        Kernels.bf16Prefill = false
    }

    override func tearDown() {
        Kernels.bf16Prefill = Kernels.bf16Available
        super.tearDown()
    }

    func testAnchorKVMatchesReference() throws {
        let (k, v, norms) = try compareAnchorKV()
        // Measured <= 1.4e-5 (K) and 2.7e-5 (V).
        XCTAssertLessThan(k, 1e-4, "K")
        XCTAssertLessThan(v, 1e-4, "V")
        XCTAssertLessThan(norms, 1e-4, "every layer's norms")
    }

    /// The encoder with BF16 prefill (the default where the CPU has AVX512_BF16; the adapters
    /// were trained with bf16 autocast) at the tolerance bf16 gives: measured on AMD Zen 4 K max
    /// abs 0.062, V 0.107, per-layer norms within 6.5e-4 of the reference.
    func testAnchorKVWithBF16PrefillWithinStatedTolerance() throws {
        try XCTSkipUnless(Kernels.bf16Available, "this CPU has no AVX512_BF16 (or ANCHORKV_BF16=0): prefill runs fp32 only")
        Kernels.bf16Prefill = true
        let (k, v, norms) = try compareAnchorKV()
        XCTAssertLessThan(k, 0.25, "K")
        XCTAssertLessThan(v, 0.25, "V")
        XCTAssertLessThan(norms, 3e-3, "every layer's norms")
    }

    /// Largest errors over the cases: K and V max abs, per-layer norms max rel.
    func compareAnchorKV() throws -> (k: Float, v: Float, norms: Float) {
        let model = try DefaultModel.load()
        var worst: (k: Float, v: Float, norms: Float) = (0, 0, 0)
        for c in try cases() {
            let (_, ctx) = try setUp(c, model: model)
            XCTAssertEqual(ctx.contextLength, c.json["n_context"] as! Int)
            XCTAssertEqual(ctx.positions, ints(c.json["anchor_positions"]), "\(c.name): anchor positions")
            let lengths = (c.json["window_lengths"] as! [Int])
            XCTAssertEqual(ctx.windowAnchorCounts, lengths.map { UniformAnchors.count(windowLength: $0, ratio: ctx.ratio) })
            let kv = try SafetensorsFile(path: Goldens.path(c.json["kv_file"] as! String))
            var kErr = ErrorStats(), vErr = ErrorStats(), normErr = ErrorStats()
            for l in c.json["kv_layers"] as! [Int] {
                kErr.add(ctx.keys[l], try kv.floats("layer\(l).k"))
                vErr.add(ctx.values[l], try kv.floats("layer\(l).v"))
            }
            func norm(_ v: [Float]) -> Float { Float(v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()) }
            normErr.add(ctx.keys.map(norm), floats(c.json["k_norms"]), floor: 1)
            normErr.add(ctx.values.map(norm), floats(c.json["v_norms"]), floor: 1)
            print("SAC \(c.name) (bf16 prefill \(Kernels.bf16Prefill)): anchor K \(kErr); V \(vErr); per-layer norms rel \(String(format: "%.3g", normErr.maxRel))")
            worst = (max(worst.k, Float(kErr.maxAbs)), max(worst.v, Float(vErr.maxAbs)), max(worst.norms, Float(normErr.maxRel)))
        }
        return worst
    }

    func testDecoderLogitsMatchReference() throws {
        let model = try DefaultModel.load()
        for c in try cases() {
            let (adapter, ctx) = try setUp(c, model: model)
            let decoder = try SACDecoder(model: model, adapter: adapter)
            let question = c.json["question"] as! String
            XCTAssertEqual(decoder.layout.questionTokens(question, model: model), ints(c.json["decoder_ids"]))
            let block = decoder.firstBlock(question: question, contextLength: ctx.contextLength)
            XCTAssertEqual(Int(block.positions[0]), c.json["decoder_start_position"] as! Int, "\(c.name): first decoder position")
            let greedy = ints(c.json["greedy_ids"])
            let rows = try decoder.teacherForcedLogits(ctx, question: question, forced: greedy, exactDecode: true)
            var err = ErrorStats()
            var argmaxMismatch = 0
            for (step, want) in (c.json["logits"] as! [[String: Any]]).enumerated() {
                let got = rows[step]
                let top = ints(want["top_ids"])
                err.add(top.map { got[Int($0)] }, floats(want["top_values"]))
                err.add(strided(got, stride: 64), floats(want["subset"]))
                if Int32(got.indices.max { got[$0] < got[$1] }!) != top[0] { argmaxMismatch += 1 }
            }
            print("SAC \(c.name): decoder logits \(err) over \(rows.count) steps")
            XCTAssertLessThan(err.maxAbs, 3e-3, "\(c.name) logits \(err)")  // measured <= 8.8e-4 (int16 decode)
            XCTAssertEqual(argmaxMismatch, 0, "\(c.name): greedy choice at every step")

            // The real decode path (int16 activations) gives the reference's greedy answer.
            let answer = try decoder.answer(ctx, question: question, maxTokens: greedy.count)
            XCTAssertEqual(answer.tokens, greedy, "\(c.name): greedy answer")
        }
    }
}

/// The converter's output (tools/sac/convert_checkpoint.py on a synthetic checkpoint in the
/// authors' key layout, for the tiny HF Llama) loads, and encodes and decodes on that model.
final class ConvertedAdapterTests: XCTestCase {
    func testConvertedTinyAdapterLoadsAndRuns() throws {
        // The tiny model is LLMTests' golden; read it from the source tree.
        let tiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../LLMTests/Goldens/tiny-llama")
        let model = try LlamaModel.load(path: tiny.standardized.path)
        let adapter = try SACAdapter.load(path: Goldens.path("tiny-adapter-r51.safetensors"), for: model)
        XCTAssertEqual(adapter.ratio, 51)
        XCTAssertEqual(adapter.memSize, 10)
        XCTAssertEqual(adapter.rank, 4)
        XCTAssertEqual(adapter.layout.bosID, 298)
        XCTAssertEqual(adapter.layout.eosID, 299)
        let ctx = try SACEncoder(model: model, mode: .adapter(adapter)).compress(text: "Hello, tiny llama! The llama eats grass.")
        XCTAssertEqual(ctx.anchorCount, 1)
        let answer = try SACDecoder(model: model, adapter: adapter).answer(ctx, question: "What does it eat?", maxTokens: 4)
        XCTAssertFalse(answer.tokens.isEmpty, "the decoder produced an answer")
        XCTAssertTrue(answer.tokens.allSatisfy { $0 >= 0 && Int($0) < model.config.vocabSize }, "\(answer.tokens)")
        // The converted LoRA and role tokens act: the anchors' KV differs from the plain model's.
        let plain = try SACEncoder(model: model, mode: .plain, ratio: 51).compress(text: "Hello, tiny llama! The llama eats grass.")
        XCTAssertEqual(plain.anchorCount, ctx.anchorCount)
        let moved = zip(ctx.keys[0], plain.keys[0]).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(moved, 1e-3, "the adapter changed the anchors' keys")

        // The default model refuses it: it was made for the tiny model's weights.
        let smol = try DefaultModel.load()
        XCTAssertThrowsError(try SACAdapter.load(path: Goldens.path("tiny-adapter-r51.safetensors"), for: smol)) {
            guard case SACError.modelMismatch = $0 else { return XCTFail("\($0)") }
        }
    }
}

/// The committed goldens are the files their generators wrote (MANIFEST.txt sha256s).
final class SACGoldenManifestTests: XCTestCase {
    func testGoldenFilesMatchTheirManifest() throws {
        XCTAssertEqual(try Goldens.manifestProblems(), [])
    }
}
