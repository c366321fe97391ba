import CKernels
import Foundation
import ModelFormats
import Tensor
import Tokenizer

/// Builds a Llama model from a GGUF file. Checkpoint quirks live here, not in the forward pass:
/// GGUF stores attn_q/attn_k rows interleaved per head for adjacent-pair RoPE; they are put back
/// in Hugging Face order so that rotate-half RoPE and HF-ordered LoRA adapters apply unchanged.
enum GGUFLoader {
    static func load(path: String) throws -> LlamaModel {
        let file = try GGUFFile(path: path)
        let md = file.metadata
        let arch = md["general.architecture"]?.string ?? "unknown"
        guard arch == "llama" else { throw LLMError.unsupportedArchitecture(arch) }
        func int(_ key: String) throws -> Int {
            guard let v = md["\(arch).\(key)"]?.int else { throw LLMError.invalidConfig("GGUF metadata lacks \(arch).\(key)") }
            return v
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.stringArray else {
            throw LLMError.invalidConfig("GGUF has no tokenizer.ggml.tokens; AnchorKV needs the tokenizer inside the model file")
        }
        let hidden = try int("embedding_length"), heads = try int("attention.head_count")
        guard heads > 0 else { throw LLMError.invalidConfig("GGUF metadata \(arch).attention.head_count is \(heads); it must be positive") }
        if md["\(arch).rope.dimension_count"] == nil {
            guard hidden > 0, hidden % heads == 0 else {
                throw LLMError.invalidConfig("GGUF metadata \(arch).embedding_length \(hidden) is not a positive multiple of attention.head_count \(heads), and there is no rope.dimension_count to give the head size")
            }
        }
        var config = LlamaConfig(
            hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"),
            layerCount: try int("block_count"),
            headCount: heads,
            kvHeadCount: md["\(arch).attention.head_count_kv"]?.int ?? heads,
            headDim: md["\(arch).rope.dimension_count"]?.int ?? hidden / heads,
            vocabSize: md["\(arch).vocab_size"]?.int ?? tokens.count,
            rmsNormEps: Float(md["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
            ropeTheta: md["\(arch).rope.freq_base"]?.double ?? 10000,
            tiedEmbeddings: file.tensor(named: "output.weight") == nil,
            contextLength: md["\(arch).context_length"]?.int ?? 2048)
        if let t = file.tensor(named: "rope_freqs.weight") {
            config.ropeFrequencyFactors = try file.dequantize(t).map(Double.init)
        }
        try config.validate()

        let tokenizer = try makeTokenizer(md, tokens: tokens)
        try checkVocabulary(tokenizer, config)
        let c = config
        func tensor(_ name: String, _ shape: [Int]) throws -> GGUFTensorInfo {
            guard let t = file.tensor(named: name) else { throw LLMError.missingTensor(name) }
            guard t.shape == shape else { throw LLMError.shapeMismatch(tensor: name, expected: shape, found: t.shape) }
            guard akv_type_supported(t.type.rawValue) == 1 else {
                throw LLMError.unsupportedTensorType(tensor: name, type: "\(t.type)")
            }
            return t
        }
        func vector(_ name: String, _ n: Int) throws -> FloatBuffer {
            FloatBuffer(try file.dequantize(try tensor(name, [n])))
        }
        /// [out, in] matrix; `permuteHeads` undoes GGUF's per-head interleave of q/k rows.
        func linear(_ name: String, out: Int, in inF: Int, permuteHeads: Int? = nil, keepF32: Bool = true) throws -> Linear {
            let t = try tensor(name, [inF, out])
            var f32: FloatBuffer?
            if keepF32 {
                let buf = FloatBuffer(count: out * inF, zeroed: false)
                try file.dequantize(t, into: buf.pointer)
                f32 = buf
            }
            var quant: QuantizedRows?
            if [GGMLType.q4_0, .q4_1, .q8_0].contains(t.type) || !keepF32 {
                quant = QuantizedRows(type: t.type.rawValue, rowBytes: t.byteCount / out, storage: ByteBuffer(copying: file.rawData(t)))
            }
            if let heads = permuteHeads {
                let order = huggingFaceRowOrder(rows: out, heads: heads)
                if let f = f32 { f32 = permuteRows(f, rowBytes: inF * 4, order: order) }
                if let q = quant {
                    quant = QuantizedRows(type: q.type, rowBytes: q.rowBytes,
                                          storage: permuteRows(q.storage, rowBytes: q.rowBytes, order: order))
                }
            }
            return Linear(outFeatures: out, inFeatures: inF, weight: f32, quantized: quant)
        }

        let embTensor = try tensor("token_embd.weight", [c.hiddenSize, c.vocabSize])
        let embQuantizedOK = akv_type_block_elems(embTensor.type.rawValue) > 1
        let embedding: EmbeddingTable
        if embQuantizedOK {
            embedding = EmbeddingTable(vocabSize: c.vocabSize, hiddenSize: c.hiddenSize, f32: nil,
                                       quantized: QuantizedRows(type: embTensor.type.rawValue, rowBytes: embTensor.byteCount / c.vocabSize,
                                                                storage: ByteBuffer(copying: file.rawData(embTensor))))
        } else {
            embedding = EmbeddingTable(vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                                       f32: FloatBuffer(try file.dequantize(embTensor)), quantized: nil)
        }
        var layers: [LayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            layers.append(LayerWeights(
                attnNorm: try vector(p + "attn_norm.weight", c.hiddenSize),
                q: try linear(p + "attn_q.weight", out: c.qDim, in: c.hiddenSize, permuteHeads: c.headCount),
                k: try linear(p + "attn_k.weight", out: c.kvDim, in: c.hiddenSize, permuteHeads: c.kvHeadCount),
                v: try linear(p + "attn_v.weight", out: c.kvDim, in: c.hiddenSize),
                o: try linear(p + "attn_output.weight", out: c.hiddenSize, in: c.qDim),
                ffnNorm: try vector(p + "ffn_norm.weight", c.hiddenSize),
                gate: try linear(p + "ffn_gate.weight", out: c.intermediateSize, in: c.hiddenSize),
                up: try linear(p + "ffn_up.weight", out: c.intermediateSize, in: c.hiddenSize),
                down: try linear(p + "ffn_down.weight", out: c.hiddenSize, in: c.intermediateSize)))
        }
        // The LM head is only ever applied to a few rows, so quantized rows suffice when present.
        let lmHead = c.tiedEmbeddings
            ? embedding.asLinear
            : try linear("output.weight", out: c.vocabSize, in: c.hiddenSize, keepF32: false)
        let weights = LlamaWeights(embedding: embedding, layers: layers,
                                   outputNorm: try vector("output_norm.weight", c.hiddenSize), lmHead: lmHead)
        let name = md["general.name"]?.string ?? URL(fileURLWithPath: path).lastPathComponent
        return LlamaModel(config: config, weights: weights, tokenizer: tokenizer, source: path, name: "\(name) (GGUF)",
                          chatTemplate: md["tokenizer.chat_template"]?.string,
                          embeddingBytes: { file.rawData(embTensor) })
    }

    /// order[hfRow] = ggufRow: HF row h*d + half*j + i is GGUF row h*d + 2i + j.
    static func huggingFaceRowOrder(rows: Int, heads: Int) -> [Int] {
        let d = rows / heads, half = d / 2
        var order = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for j in 0..<2 {
                for i in 0..<half { order[h * d + half * j + i] = h * d + 2 * i + j }
            }
        }
        return order
    }

    static func permuteRows(_ src: FloatBuffer, rowBytes: Int, order: [Int]) -> FloatBuffer {
        let dst = FloatBuffer(count: src.count, zeroed: false)
        let n = rowBytes / 4
        for (to, from) in order.enumerated() { (dst.pointer + to * n).update(from: src.pointer + from * n, count: n) }
        return dst
    }

    static func permuteRows(_ src: ByteBuffer, rowBytes: Int, order: [Int]) -> ByteBuffer {
        let dst = ByteBuffer(count: src.count)
        for (to, from) in order.enumerated() { (dst.pointer + to * rowBytes).copyMemory(from: src.pointer + from * rowBytes, byteCount: rowBytes) }
        return dst
    }

    static func makeTokenizer(_ md: [String: GGUFValue], tokens: [String]) throws -> BPETokenizer {
        let model = md["tokenizer.ggml.model"]?.string ?? "gpt2"
        guard model == "gpt2" else {
            throw LLMError.invalidConfig("tokenizer.ggml.model '\(model)' is not supported; AnchorKV reads byte-level BPE ('gpt2') vocabularies")
        }
        let pre: PreTokenizerKind
        switch md["tokenizer.ggml.pre"]?.string ?? "default" {
        case "smollm": pre = .smollm
        case "llama-bpe", "llama3": pre = .llama3
        default: pre = .gpt2
        }
        let merges = md["tokenizer.ggml.merges"]?.stringArray ?? []
        let types = md["tokenizer.ggml.token_type"]?.intArray.map { $0.map(Int32.init) }
        do {
            return try BPETokenizer(
                tokens: tokens, merges: merges, tokenTypes: types, preTokenizer: pre,
                bosID: md["tokenizer.ggml.bos_token_id"]?.int.map(Int32.init),
                eosID: md["tokenizer.ggml.eos_token_id"]?.int.map(Int32.init),
                unknownID: md["tokenizer.ggml.unknown_token_id"]?.int.map(Int32.init),
                addBOS: md["tokenizer.ggml.add_bos_token"]?.bool ?? false)
        } catch {
            throw LLMError.invalidConfig("GGUF tokenizer: \(error)")
        }
    }
}

/// Builds a Llama model from a Hugging Face directory: config.json, model*.safetensors, tokenizer.json.
enum HuggingFaceLoader {
    static func load(directory: String) throws -> LlamaModel {
        let dir = URL(fileURLWithPath: directory)
        guard let configData = try? Data(contentsOf: dir.appendingPathComponent("config.json")) else {
            throw LLMError.invalidConfig("\(directory) has no readable config.json; a Hugging Face model directory needs config.json, *.safetensors and tokenizer.json")
        }
        let config = try LlamaConfig.fromHuggingFace(configData)
        guard let tokData = try? Data(contentsOf: dir.appendingPathComponent("tokenizer.json")) else {
            throw LLMError.invalidConfig("\(directory) has no tokenizer.json")
        }
        let tokenizer: BPETokenizer
        do { tokenizer = try BPETokenizer.fromTokenizerJSON(tokData) } catch {
            throw LLMError.invalidConfig("tokenizer.json: \(error)")
        }
        try checkVocabulary(tokenizer, config)
        let st = try SafetensorsModel(directory: directory)
        let c = config
        func floats(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let info = st.info(name) else { throw LLMError.missingTensor(name) }
            guard info.shape == shape else { throw LLMError.shapeMismatch(tensor: name, expected: shape, found: info.shape) }
            return try st.floats(name)
        }
        func linear(_ name: String, out: Int, in inF: Int) throws -> Linear {
            Linear(outFeatures: out, inFeatures: inF, weight: FloatBuffer(try floats(name, [out, inF])), quantized: nil)
        }
        let embedding = EmbeddingTable(vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                                       f32: FloatBuffer(try floats("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize])), quantized: nil)
        var layers: [LayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "model.layers.\(i)."
            layers.append(LayerWeights(
                attnNorm: FloatBuffer(try floats(p + "input_layernorm.weight", [c.hiddenSize])),
                q: try linear(p + "self_attn.q_proj.weight", out: c.qDim, in: c.hiddenSize),
                k: try linear(p + "self_attn.k_proj.weight", out: c.kvDim, in: c.hiddenSize),
                v: try linear(p + "self_attn.v_proj.weight", out: c.kvDim, in: c.hiddenSize),
                o: try linear(p + "self_attn.o_proj.weight", out: c.hiddenSize, in: c.qDim),
                ffnNorm: FloatBuffer(try floats(p + "post_attention_layernorm.weight", [c.hiddenSize])),
                gate: try linear(p + "mlp.gate_proj.weight", out: c.intermediateSize, in: c.hiddenSize),
                up: try linear(p + "mlp.up_proj.weight", out: c.intermediateSize, in: c.hiddenSize),
                down: try linear(p + "mlp.down_proj.weight", out: c.hiddenSize, in: c.intermediateSize)))
        }
        let tied = c.tiedEmbeddings || st.info("lm_head.weight") == nil
        let lmHead = tied ? embedding.asLinear : try linear("lm_head.weight", out: c.vocabSize, in: c.hiddenSize)
        let weights = LlamaWeights(embedding: embedding, layers: layers,
                                   outputNorm: FloatBuffer(try floats("model.norm.weight", [c.hiddenSize])), lmHead: lmHead)
        var template: String?
        if let data = try? Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json")),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            template = obj["chat_template"] as? String
        }
        return LlamaModel(config: config, weights: weights, tokenizer: tokenizer, source: directory,
                          name: "\(dir.lastPathComponent) (safetensors)", chatTemplate: template,
                          embeddingBytes: { try st.rawData("model.embed_tokens.weight") })
    }
}

/// A tokenizer with more tokens than the model has embedding rows would hand the forward pass ids
/// it cannot look up; refused when the model is loaded, naming both sizes.
func checkVocabulary(_ tokenizer: BPETokenizer, _ config: LlamaConfig) throws {
    guard tokenizer.vocabularySize <= config.vocabSize else {
        throw LLMError.invalidConfig("the tokenizer has \(tokenizer.vocabularySize) tokens, more than the model's vocab_size \(config.vocabSize) (embedding rows); use the tokenizer that belongs to the model")
    }
}
