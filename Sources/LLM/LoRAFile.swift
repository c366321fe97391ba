import Foundation
import ModelFormats

extension LoRAWeights {
    public static let fileFormat = "anchorkv.lora-adapter"

    /// Loads a plain LoRA adapter (q/v of every layer, no SAC parts: the "Full-FT" upper bound
    /// the training tool makes) and checks it was trained on `model`'s weights. Tensors
    /// `layers.{i}.q_proj.lora_A` [hidden, rank], `lora_B` [rank, q_dim], same for v_proj
    /// [.., kv_dim]; metadata format, lora_rank, lora_scale, base_model, hidden_size, num_layers.
    public static func load(path: String, for model: LlamaModel) throws -> LoRAWeights {
        func bad(_ why: String) -> LLMError { .invalidInput("LoRA adapter \(path): \(why)") }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw bad("\(error)") }
        let md = file.metadata
        guard md["format"] == fileFormat else {
            throw bad("metadata 'format' is \(md["format"].map { "'\($0)'" } ?? "missing"), expected '\(fileFormat)' (SAC adapters load with --adapter)")
        }
        let c = model.config, H = c.hiddenSize
        guard let rank = md["lora_rank"].flatMap(Int.init), rank > 0 else { throw bad("metadata 'lora_rank' is missing or not positive") }
        guard let scale = md["lora_scale"].flatMap(Float.init), scale.isFinite else { throw bad("metadata 'lora_scale' is missing or not a finite number") }
        let fp = try model.fingerprint()
        guard md["base_model"] == fp else { throw bad("made for base model \(md["base_model"] ?? "?"), the loaded model is \(fp)") }
        guard md["hidden_size"] == String(H), md["num_layers"] == String(c.layerCount) else {
            throw bad("made for hidden \(md["hidden_size"] ?? "?") x \(md["num_layers"] ?? "?") layers, the model has \(H) x \(c.layerCount)")
        }
        func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = file.tensors[name] else { throw bad("tensor '\(name)' is missing") }
            guard t.shape == shape else { throw bad("tensor '\(name)' has shape \(t.shape), expected \(shape)") }
            do { return try file.floats(t) } catch { throw bad("\(error)") }
        }
        return try layers(of: model, rank: rank, scale: scale, tensor: tensor)
    }

    /// LoRA on q/v of every layer from tensors named `layers.{i}.{q,v}_proj.lora_{A,B}`
    /// ([hidden, rank] and [rank, out]); `tensor` reads one by name and checks its shape. Shared
    /// by plain LoRA files and SAC adapters, which store their LoRA the same way.
    public static func layers(of model: LlamaModel, rank: Int, scale: Float,
                              tensor: (_ name: String, _ shape: [Int]) throws -> [Float]) throws -> LoRAWeights {
        let c = model.config, H = c.hiddenSize
        var q: [LoRAPair?] = [], v: [LoRAPair?] = []
        for l in 0..<c.layerCount {
            let p = "layers.\(l)."
            q.append(try LoRAPair(a: try tensor(p + "q_proj.lora_A", [H, rank]), b: try tensor(p + "q_proj.lora_B", [rank, c.qDim]),
                                  inFeatures: H, rank: rank, outFeatures: c.qDim))
            v.append(try LoRAPair(a: try tensor(p + "v_proj.lora_A", [H, rank]), b: try tensor(p + "v_proj.lora_B", [rank, c.kvDim]),
                                  inFeatures: H, rank: rank, outFeatures: c.kvDim))
        }
        return LoRAWeights(q: q, v: v, scale: scale)
    }
}
