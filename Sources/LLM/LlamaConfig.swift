import Foundation

/// RoPE frequency scaling as in HF `rope_scaling` (only the Llama-3 kind changes frequencies).
public struct RopeScaling: Sendable, Equatable {
    public var type: String
    public var factor: Double
    public var lowFreqFactor: Double
    public var highFreqFactor: Double
    public var originalMaxPositionEmbeddings: Double

    public init(type: String, factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositionEmbeddings: Double) {
        self.type = type
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

/// Shape and hyper-parameters of a Llama-family decoder.
public struct LlamaConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var vocabSize: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    /// Per-frequency divisors from a GGUF `rope_freqs.weight` tensor (Llama-3 GGUF exports).
    public var ropeFrequencyFactors: [Double]?
    public var tiedEmbeddings: Bool
    public var contextLength: Int

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    public init(hiddenSize: Int, intermediateSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                headDim: Int, vocabSize: Int, rmsNormEps: Float, ropeTheta: Double, ropeScaling: RopeScaling? = nil,
                ropeFrequencyFactors: [Double]? = nil, tiedEmbeddings: Bool, contextLength: Int) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.ropeFrequencyFactors = ropeFrequencyFactors
        self.tiedEmbeddings = tiedEmbeddings
        self.contextLength = contextLength
    }

    func validate() throws {
        guard hiddenSize > 0, intermediateSize > 0, layerCount > 0, headCount > 0, kvHeadCount > 0, headDim > 0, vocabSize > 0 else {
            throw LLMError.invalidConfig("sizes must be positive: \(self)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw LLMError.invalidConfig("head count \(headCount) is not a multiple of the KV head count \(kvHeadCount)")
        }
        guard headDim % 2 == 0 else { throw LLMError.invalidConfig("head_dim \(headDim) must be even for RoPE") }
    }

    /// inv_freq[i] = theta^(-2i/d), then Llama-3 scaling or GGUF frequency factors.
    public func ropeInverseFrequencies() -> [Double] {
        let half = headDim / 2
        var inv = (0..<half).map { 1.0 / pow(ropeTheta, Double(2 * $0) / Double(headDim)) }
        if let s = ropeScaling, s.type == "llama3" {
            let lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor
            let highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen > lowWavelen { return f / s.factor }
                if wavelen < highWavelen { return f }
                let smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
                return (1 - smooth) * f / s.factor + smooth * f
            }
        } else if let s = ropeScaling, s.type == "linear" {
            inv = inv.map { $0 / s.factor }
        }
        if let factors = ropeFrequencyFactors, factors.count == half {
            inv = zip(inv, factors).map { $0 / $1 }
        }
        return inv
    }

    /// Reads a Hugging Face config.json (LlamaForCausalLM and compatible).
    public static func fromHuggingFace(_ data: Data) throws -> LlamaConfig {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LLMError.invalidConfig("config.json is not a JSON object")
        }
        func int(_ k: String) throws -> Int {
            guard let v = json[k] as? NSNumber else { throw LLMError.invalidConfig("config.json lacks integer '\(k)'") }
            return v.intValue
        }
        // Llama only: Mistral's sliding window, Qwen's biases etc. would silently compute something else.
        if let arch = json["model_type"] as? String, arch != "llama" {
            throw LLMError.unsupportedArchitecture(arch)
        }
        if let act = json["hidden_act"] as? String, act != "silu" {
            throw LLMError.invalidConfig("hidden_act '\(act)' is not supported (Llama uses silu)")
        }
        if (json["attention_bias"] as? Bool) == true || (json["mlp_bias"] as? Bool) == true {
            throw LLMError.invalidConfig("attention_bias/mlp_bias are not supported (Llama has no biases)")
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let headDim = (json["head_dim"] as? NSNumber)?.intValue ?? hidden / heads
        var scaling: RopeScaling?
        if let rs = json["rope_scaling"] as? [String: Any] {
            let type = (rs["rope_type"] as? String) ?? (rs["type"] as? String) ?? "default"
            scaling = RopeScaling(
                type: type,
                factor: (rs["factor"] as? NSNumber)?.doubleValue ?? 1,
                lowFreqFactor: (rs["low_freq_factor"] as? NSNumber)?.doubleValue ?? 1,
                highFreqFactor: (rs["high_freq_factor"] as? NSNumber)?.doubleValue ?? 4,
                originalMaxPositionEmbeddings: (rs["original_max_position_embeddings"] as? NSNumber)?.doubleValue ?? 8192)
            if !["llama3", "linear", "default"].contains(type) {
                throw LLMError.invalidConfig("rope_scaling type '\(type)' is not supported (llama3, linear)")
            }
        }
        let config = LlamaConfig(
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            layerCount: try int("num_hidden_layers"),
            headCount: heads,
            kvHeadCount: (json["num_key_value_heads"] as? NSNumber)?.intValue ?? heads,
            headDim: headDim,
            vocabSize: try int("vocab_size"),
            rmsNormEps: (json["rms_norm_eps"] as? NSNumber)?.floatValue ?? 1e-5,
            ropeTheta: (json["rope_theta"] as? NSNumber)?.doubleValue ?? 10000,
            ropeScaling: scaling,
            tiedEmbeddings: (json["tie_word_embeddings"] as? Bool) ?? false,
            contextLength: (json["max_position_embeddings"] as? NSNumber)?.intValue ?? 2048)
        try config.validate()
        return config
    }
}
