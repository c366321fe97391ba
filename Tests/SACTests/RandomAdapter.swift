import Foundation
import LLM
import ModelFormats
import SAC

/// Writes a seeded random adapter for `model` in the adapter file format (for tests of the
/// loader and the file paths; numerics are checked against the reference's own adapters).
func writeRandomAdapter(for model: LlamaModel, ratio: Int, rank: Int = 2, seed: UInt64 = 1, to path: String,
                        metadataOverrides: [String: String?] = [:], dropTensor: String? = nil) throws {
    let c = model.config, H = c.hiddenSize
    var rng = SplitMix64(seed: seed)
    func random(_ n: Int, _ scale: Float) -> [Float] {
        (0..<n).map { _ in (Float(rng.next() % 2001) / 1000 - 1) * scale }
    }
    let mem = 510 / ratio
    var entries: [SafetensorsWriter.Entry] = [
        .init(name: "role_tokens", shape: [mem, H], floats: random(mem * H, 0.02), as: .bf16),
        .init(name: "special_tokens", shape: [2, H], floats: random(2 * H, 0.05), as: .bf16),
    ]
    for l in 0..<c.layerCount {
        let p = "layers.\(l)."
        entries += [
            .init(name: p + "q_proj.lora_A", shape: [H, rank], floats: random(H * rank, 0.05), as: .bf16),
            .init(name: p + "q_proj.lora_B", shape: [rank, c.qDim], floats: random(rank * c.qDim, 0.02), as: .bf16),
            .init(name: p + "v_proj.lora_A", shape: [H, rank], floats: random(H * rank, 0.05), as: .bf16),
            .init(name: p + "v_proj.lora_B", shape: [rank, c.kvDim], floats: random(rank * c.kvDim, 0.02), as: .bf16),
        ]
    }
    entries.removeAll { $0.name == dropTensor }
    var md: [String: String] = [
        "format": SACAdapter.formatName, "format_version": SACAdapter.formatVersion, "ratio": String(ratio),
        "window": "510", "mem_size": String(mem), "lora_rank": String(rank), "lora_scale": "2.0",
        "hidden_size": String(H), "num_layers": String(c.layerCount), "base_model": try model.fingerprint(),
        "bos_id": "1", "eos_id": "2", "anchor_selection": "uniform", "source": "random test adapter, seed \(seed)",
    ]
    for (k, v) in metadataOverrides { md[k] = v }
    try SafetensorsWriter.write(entries, metadata: md, to: path)
}
