import Digest
import Foundation
import LLM
import ModelFormats

/// A trained SAC adapter for one base model and one ratio: LoRA on q/v of every layer (encoder
/// only), the role-token table added to anchor embeddings, and the [LM] embedding that starts
/// the decoder input. Stored as safetensors with string metadata (docs/sac.md, "Adapter file").
public final class SACAdapter: Sendable {
    public static let formatName = "anchorkv.sac-adapter"
    public static let formatVersion = "1"

    public let ratio: Int
    public let layout: SACLayout
    public let rank: Int
    /// [memSize, hidden]; row k is added to the k-th anchor of every window.
    public let roleTokens: [Float]
    public let memSize: Int
    /// [2, hidden]; row 1 is [LM] (row 0 is unused by SAC).
    public let specialTokens: [Float]
    public let lora: LoRAWeights
    /// Fingerprint of the base model the adapter was trained on (LlamaModel.fingerprint()).
    public let baseModel: String
    /// 32 hex digits of sha256 over the adapter file: what stores and KV files record.
    public let fingerprint: String
    public let metadata: [String: String]
    public let hiddenSize: Int

    /// The [LM] embedding (special_tokens row 1).
    public var lmEmbedding: [Float] { Array(specialTokens[hiddenSize..<(2 * hiddenSize)]) }

    public init(ratio: Int, layout: SACLayout, rank: Int, roleTokens: [Float], specialTokens: [Float],
                lora: LoRAWeights, baseModel: String, hiddenSize: Int, metadata: [String: String] = [:],
                fingerprint: String) {
        self.ratio = ratio
        self.layout = layout
        self.rank = rank
        self.roleTokens = roleTokens
        self.memSize = roleTokens.count / hiddenSize
        self.specialTokens = specialTokens
        self.lora = lora
        self.baseModel = baseModel
        self.hiddenSize = hiddenSize
        self.metadata = metadata
        self.fingerprint = fingerprint
    }

    /// Role-token row for the k-th anchor of a window.
    func roleToken(_ k: Int) -> [Float] {
        Array(roleTokens[(k * hiddenSize)..<((k + 1) * hiddenSize)])
    }

    /// Loads and validates an adapter for `model`: format, every shape, and that it was made
    /// for this model's weights.
    public static func load(path: String, for model: LlamaModel) throws -> SACAdapter {
        func bad(_ why: String) -> SACError { .invalidAdapter(path: path, reason: why) }
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw bad("cannot read the file; check the path (adapters are .safetensors files, see docs/sac.md)")
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw bad("\(error)") }
        let md = file.metadata
        guard md["format"] == formatName else {
            throw bad("metadata 'format' is \(md["format"].map { "'\($0)'" } ?? "missing"), expected '\(formatName)'; convert the authors' checkpoints with tools/sac/convert_checkpoint.py")
        }
        guard md["format_version"] == formatVersion else {
            throw bad("format_version \(md["format_version"] ?? "missing") is not supported (this build reads \(formatVersion))")
        }
        func int(_ key: String) throws -> Int {
            guard let s = md[key], let v = Int(s) else { throw bad("metadata '\(key)' is missing or not an integer") }
            return v
        }
        let c = model.config, H = c.hiddenSize
        let ratio = try int("ratio"), rank = try int("lora_rank"), window = try int("window")
        guard ratio >= 1, window >= 1, rank >= 1 else { throw bad("ratio, window and lora_rank must be positive") }
        guard let scale = md["lora_scale"].flatMap(Float.init) else { throw bad("metadata 'lora_scale' is missing") }
        guard scale.isFinite else { throw bad("metadata 'lora_scale' is \(scale); it must be a finite number") }
        guard let base = md["base_model"] else { throw bad("metadata 'base_model' is missing") }
        let actual = try model.fingerprint()
        guard base == actual else { throw SACError.modelMismatch(what: "adapter \(path)", expected: base, found: actual) }
        guard try int("hidden_size") == H, try int("num_layers") == c.layerCount else {
            throw bad("made for hidden \(md["hidden_size"] ?? "?") x \(md["num_layers"] ?? "?") layers, the model has \(H) x \(c.layerCount)")
        }
        // The window sizes the encoder's session (window x layers x kv_dim), so it is bounded by
        // the model's context (or SAC's own 510-token windows, for tiny test models of shorter
        // context); a ratio is a u16 wherever KV is stored.
        let maxWindow = max(c.contextLength, 512)
        guard window <= maxWindow else {
            throw bad("window \(window) is longer than the model's context (\(c.contextLength) tokens) and than 512")
        }
        guard ratio <= Int(UInt16.max) else { throw bad("ratio \(ratio) is above \(UInt16.max)") }
        var layout = SACLayout.defaults(for: model)
        layout.window = window
        func tokenID(_ key: String) throws -> Int32? {
            guard let s = md[key] else { return nil }
            guard let v = Int32(s), v >= 0, Int(v) < c.vocabSize else { throw bad("\(key) '\(s)' is not a token id of the model (0..<\(c.vocabSize))") }
            return v
        }
        if let v = try tokenID("bos_id") { layout.bosID = v }
        if let v = try tokenID("eos_id") { layout.eosID = v }
        if let h = md["context_header"] { layout.contextHeader = h }
        if let q = md["question_prefix"] { layout.questionPrefix = q }
        if let a = md["answer_prefix"] { layout.answerPrefix = a }
        if let sel = md["anchor_selection"], sel != "uniform" { throw bad("anchor_selection '\(sel)' is not supported (uniform)") }

        func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = file.tensors[name] else { throw bad("tensor '\(name)' is missing") }
            guard t.shape == shape else { throw bad("tensor '\(name)' has shape \(t.shape), expected \(shape)") }
            guard [.f32, .f16, .bf16].contains(t.dtype) else { throw bad("tensor '\(name)' is \(t.dtype.rawValue); adapters hold F32, F16 or BF16") }
            do { return try file.floats(t) } catch { throw bad("\(error)") }
        }
        let memSize = try int("mem_size")
        // One role row per anchor of a full window (the uniform rule at this ratio), at most one per token.
        let anchors = UniformAnchors.count(windowLength: window, ratio: ratio)
        guard memSize >= anchors, memSize <= window else {
            throw bad("mem_size \(memSize) role tokens, but a window of \(window) tokens at ratio \(ratio) has \(anchors) anchors (mem_size must be \(anchors)...\(window))")
        }
        let role = try tensor("role_tokens", [memSize, H])
        let special = try tensor("special_tokens", [2, H])
        let lora = try LoRAWeights.layers(of: model, rank: rank, scale: scale, tensor: tensor)
        let fp = String(SHA256.hex(bytes).prefix(32))
        return SACAdapter(ratio: ratio, layout: layout, rank: rank, roleTokens: role, specialTokens: special,
                          lora: lora, baseModel: base, hiddenSize: H,
                          metadata: md, fingerprint: fp)
    }
}

extension SACAdapter {
    /// A seeded random adapter for `model` (benchmarks and smoke tests: the encoder's cost does
    /// not depend on the values). LoRA B is non-zero so the LoRA path really runs.
    public static func random(for model: LlamaModel, ratio: Int, rank: Int, seed: UInt64 = 1) throws -> SACAdapter {
        let c = model.config, H = c.hiddenSize
        var rng = SplitMix64(seed: seed)
        func values(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in (Float(rng.next() % 2001) / 1000 - 1) * scale } }
        var q: [LoRAPair?] = [], v: [LoRAPair?] = []
        for _ in 0..<c.layerCount {
            q.append(try LoRAPair(a: values(H * rank, 0.05), b: values(rank * c.qDim, 0.02), inFeatures: H, rank: rank, outFeatures: c.qDim))
            v.append(try LoRAPair(a: values(H * rank, 0.05), b: values(rank * c.kvDim, 0.02), inFeatures: H, rank: rank, outFeatures: c.kvDim))
        }
        var layout = SACLayout.defaults(for: model)
        layout.window = 510
        return SACAdapter(ratio: ratio, layout: layout, rank: rank, roleTokens: values((510 / ratio) * H, 0.02),
                          specialTokens: values(2 * H, 0.05), lora: LoRAWeights(q: q, v: v, scale: 2),
                          baseModel: try model.fingerprint(), hiddenSize: H, metadata: ["source": "random seed \(seed)"],
                          fingerprint: "random-r\(ratio)-rank\(rank)-seed\(seed)")
    }
}
