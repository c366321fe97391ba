import Foundation
import LLM
import ModelFormats
import Tensor
import XCTest
@testable import SAC

/// The PyTorch trainer (tools/sac/train.py) against the engine: an adapter written by the
/// trainer's exporter loads with SACAdapter.load, and the Swift encoder/decoder reproduce the
/// trainer's own torch encoder/decoder (float64) on it. Goldens: tools/sac/make_trained_goldens.py
/// (which also checks the torch code against tools/reference/sac_ref.py to 1e-13).
final class TorchExportTests: XCTestCase {
    /// At fp32 tolerance, against the float64 trainer: BF16 prefill off (the SAC golden tests
    /// check BF16 at its own tolerance).
    func testTorchExportedAdapterMatchesTrainer() throws {
        Kernels.bf16Prefill = false
        defer { Kernels.bf16Prefill = Kernels.bf16Available }
        let g = try Goldens.json("torch-goldens.json")
        let model = try DefaultModel.load()
        let adapter = try SACAdapter.load(path: Goldens.path(g["adapter"] as! String), for: model)
        XCTAssertEqual(adapter.ratio, g["ratio"] as? Int)
        XCTAssertEqual(adapter.rank, 4)
        XCTAssertEqual(adapter.baseModel, g["base_model_fingerprint"] as? String)
        XCTAssertEqual(adapter.layout.bosID, 1)
        XCTAssertEqual(adapter.layout.eosID, 2)
        XCTAssertEqual(adapter.layout.contextHeader, "### Context:\n")
        XCTAssertEqual(adapter.layout.questionPrefix, "\n### Question:\n")
        XCTAssertEqual(adapter.layout.answerPrefix, "\n### Answer:\n")

        let encoder = try SACEncoder(model: model, mode: .adapter(adapter))
        XCTAssertEqual(encoder.contextTokens(g["text"] as! String), ints(g["encoder_ids"]), "encoder input tokens")
        let ctx = try encoder.compress(tokens: ints(g["encoder_ids"]))
        XCTAssertEqual(ctx.contextLength, g["n_context"] as! Int)
        XCTAssertEqual(ctx.positions, ints(g["anchor_positions"]), "anchor positions")
        let kv = try SafetensorsFile(path: Goldens.path(g["kv_file"] as! String))
        var kErr = ErrorStats(), vErr = ErrorStats()
        for l in g["kv_layers"] as! [Int] {
            kErr.add(ctx.keys[l], try kv.floats("layer\(l).k"))
            vErr.add(ctx.values[l], try kv.floats("layer\(l).v"))
        }

        let decoder = try SACDecoder(model: model, adapter: adapter)
        let question = g["question"] as! String
        XCTAssertEqual(decoder.layout.questionTokens(question, model: model), ints(g["decoder_ids"]))
        let block = decoder.firstBlock(question: question, contextLength: ctx.contextLength)
        XCTAssertEqual(Int(block.positions[0]), g["decoder_start_position"] as! Int, "[LM] position")
        let forced = ints(g["forced_ids"])
        let rows = try decoder.teacherForcedLogits(ctx, question: question, forced: forced, exactDecode: true)
        let stride = g["subset_stride"] as! Int
        var lErr = ErrorStats()
        var argmaxMismatch = 0
        for (step, want) in (g["logits"] as! [[String: Any]]).enumerated() {
            let got = rows[step]
            let top = ints(want["top_ids"])
            lErr.add(top.map { got[Int($0)] }, floats(want["top_values"]))
            lErr.add(strided(got, stride: stride), floats(want["subset"]))
            if Int32(got.indices.max { got[$0] < got[$1] }!) != top[0] { argmaxMismatch += 1 }
        }
        print("torch export: anchor K \(kErr); V \(vErr); logits \(lErr) over \(rows.count) steps")
        // Measured 1.3e-5 (K), 3.2e-5 (V), 9.1e-4 (logits, int16 decode).
        XCTAssertLessThan(kErr.maxAbs, 1e-4, "K \(kErr)")
        XCTAssertLessThan(vErr.maxAbs, 1e-4, "V \(vErr)")
        XCTAssertLessThan(lErr.maxAbs, 3e-3, "logits \(lErr)")
        XCTAssertEqual(argmaxMismatch, 0, "greedy choice at every step")
    }
}
