import Digest
import Foundation
import Synchronization
import Tensor
import Tokenizer

/// A loaded Llama-family model: configuration, weights, tokenizer. Immutable after loading,
/// so one instance is shared by every session (weights are never copied per request).
public final class LlamaModel: Sendable {
    public let config: LlamaConfig
    public let weights: LlamaWeights
    public let tokenizer: BPETokenizer
    public let rope: RoPE
    /// Tokens that end generation (eos plus the chat end markers the vocabulary has).
    public let stopTokens: Set<Int32>
    /// Where the model came from (file or directory).
    public let source: String
    /// A short description for logs: name and format.
    public let name: String
    /// The Jinja chat template the checkpoint ships, if any (only read for its default system prompt).
    public let chatTemplate: String?

    /// Returns the stored bytes of the token-embedding tensor (kept mapped, read only when the
    /// fingerprint is first asked for).
    private let embeddingBytes: @Sendable () throws -> UnsafeRawBufferPointer
    /// Computed on first use (it hashes the embedding table), then kept.
    private let cachedFingerprint = Mutex<String?>(nil)

    init(config: LlamaConfig, weights: LlamaWeights, tokenizer: BPETokenizer, source: String, name: String,
         chatTemplate: String? = nil, embeddingBytes: @escaping @Sendable () throws -> UnsafeRawBufferPointer) {
        self.chatTemplate = chatTemplate
        self.embeddingBytes = embeddingBytes
        self.config = config
        self.weights = weights
        self.tokenizer = tokenizer
        self.rope = RoPE(headDim: config.headDim, inverseFrequencies: config.ropeInverseFrequencies())
        var stops = Set<Int32>()
        if let e = tokenizer.eosID { stops.insert(e) }
        for t in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"] {
            if let id = tokenizer.id(of: t), tokenizer.isSpecial(id) { stops.insert(id) }
        }
        stopTokens = stops
        self.source = source
        self.name = name
        // All threading goes through the kernel pool (Parallel): OpenBLAS's own threads spin
        // (sched_yield) after every call and, on few cores, stole time from the pool's work.
        BLAS.setThreads(1)
    }

    /// Loads a GGUF file, or a Hugging Face directory (config.json + *.safetensors + tokenizer.json).
    public static func load(path: String) throws -> LlamaModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw LLMError.modelNotFound(path) }
        return isDir.boolValue ? try HuggingFaceLoader.load(directory: path) : try GGUFLoader.load(path: path)
    }

    /// The default model as installed by tools/setup.sh: $ANCHORKV_MODEL, else
    /// models/SmolLM2-135M-Instruct.Q4_1.gguf in the working directory or one of its parents.
    public static func defaultModelPath() -> String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["ANCHORKV_MODEL"], !p.isEmpty { return p }
        let relative = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
        var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        for _ in 0..<8 {
            let candidate = dir.appendingPathComponent(relative).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return relative
    }

    /// The system prompt the chat template inserts when a conversation has none (SmolLM2 has one).
    public var defaultSystemPrompt: String? {
        guard let t = chatTemplate, let start = t.range(of: "<|im_start|>system\\n") ?? t.range(of: "<|im_start|>system\n"),
              let end = t.range(of: "<|im_end|>", range: start.upperBound..<t.endIndex) else { return nil }
        let s = String(t[start.upperBound..<end.lowerBound])
        return s.contains("{") ? nil : s
    }

    /// Identifies the base model's weights: 32 hex digits of
    /// sha256("llama|layers=L|hidden=H|heads=nh|kv_heads=nkv|head_dim=d|ffn=F|vocab=V|" + the
    /// token-embedding tensor's bytes as stored in the file). Adapters and stores record it so
    /// that KV made by one model is never decoded by another. tools/reference/sac_ref.py
    /// computes the same value.
    public func fingerprint() throws -> String {
        if let f = cachedFingerprint.withLock({ $0 }) { return f }
        let c = config
        var h = SHA256()
        h.update("llama|layers=\(c.layerCount)|hidden=\(c.hiddenSize)|heads=\(c.headCount)|kv_heads=\(c.kvHeadCount)|head_dim=\(c.headDim)|ffn=\(c.intermediateSize)|vocab=\(c.vocabSize)|")
        h.update(try embeddingBytes())
        let f = String(h.finalize().hexString.prefix(32))
        cachedFingerprint.withLock { $0 = f }
        return f
    }

    public func makeSession(capacity: Int = 1024) -> InferenceSession {
        InferenceSession(model: self, capacity: capacity)
    }
}

public struct GenerationStats: Sendable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var stoppedByToken = false

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens produced after the first (the first comes from prefill).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / decodeSeconds : 0
    }
}

extension LlamaModel {
    /// Prefills the prompt, then samples up to maxTokens tokens; onToken gets each one and may
    /// return false to stop. The stop token itself is not passed on.
    @discardableResult
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy,
                         onToken: (Int32) -> Bool) throws -> GenerationStats {
        guard !prompt.isEmpty else { throw LLMError.invalidInput("the prompt has no tokens") }
        let needed = prompt.count + maxTokens
        if needed > config.contextLength { throw LLMError.contextOverflow(needed: needed, limit: config.contextLength) }
        let session = makeSession(capacity: needed)
        var sampler = Sampler(sampling)
        var stats = GenerationStats(promptTokens: prompt.count)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try session.forward(prompt).logits
        let t1 = DispatchTime.now().uptimeNanoseconds
        stats.prefillSeconds = Double(t1 - t0) / 1e9
        var decodeStart = t1
        for step in 0..<maxTokens {
            let next = logits.withUnsafeBufferPointer { sampler.sample($0) }
            if step == 0 { decodeStart = DispatchTime.now().uptimeNanoseconds }
            if stopTokens.contains(next) { stats.stoppedByToken = true; break }
            stats.generatedTokens += 1
            if !onToken(next) || step == maxTokens - 1 { break }
            logits = try session.forward([next]).logits
        }
        stats.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - decodeStart) / 1e9
        return stats
    }
}
