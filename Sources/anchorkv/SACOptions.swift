import ArgumentParser
import Foundation
import LLM
import SAC

/// --ratio, --adapter and --no-adapter: which SAC encoder/decoder a command uses.
struct SACOptions: ParsableArguments {
    @Option(name: .long, help: "Compression ratio: every r-th token becomes an anchor (default: the config file's sac.ratio, 5). 1 keeps the full KV.")
    var ratio: Int?

    @Option(name: .long, help: "SAC adapter file (.safetensors; default: the config file's adapter for the ratio).")
    var adapter: String?

    @Flag(name: .long, help: "Training-free baseline: plain causal model, keep only the anchors' KV.")
    var noAdapter = false

    func validate() throws {
        if let r = ratio, r < 1 { throw ValidationError("--ratio must be >= 1") }
        if noAdapter && adapter != nil { throw ValidationError("--adapter and --no-adapter exclude each other") }
    }

    /// The encoder mode and ratio for compressing text.
    func resolveMode(model: LlamaModel, config: AppConfig) throws -> (mode: EncoderMode, ratio: Int) {
        if noAdapter { return (.plain, ratio ?? config.sacRatio) }
        if let path = adapter {
            let a = try loadAdapter(path, model: model)
            return (.adapter(a), ratio ?? a.ratio)
        }
        let r = ratio ?? config.sacRatio
        if let path = config.sacAdapters[r], FileManager.default.fileExists(atPath: path) {
            return (.adapter(try loadAdapter(path, model: model)), r)
        }
        // Ratio 1 without a full-context adapter is the plain model's full KV: nothing to train.
        if r == 1 { return (.plain, 1) }
        let configured = config.sacAdapters[r].map { " (the config names \($0), which does not exist)" } ?? ""
        throw CLIError("no SAC adapter for ratio \(r)\(configured); pass --adapter PATH, choose a ratio that has one, or --no-adapter for training-free anchors")
    }

    /// The adapter that decodes a context encoded with adapter `fingerprint` (nil: none).
    func resolveDecoderAdapter(for fingerprint: String?, ratio: Int, model: LlamaModel, config: AppConfig) throws -> SACAdapter? {
        guard let fingerprint else { return nil }
        var candidates: [String] = []
        if let a = adapter { candidates.append(a) }
        if let p = config.sacAdapters[ratio] { candidates.append(p) }
        for path in candidates where FileManager.default.fileExists(atPath: path) {
            let a = try loadAdapter(path, model: model)
            if a.fingerprint == fingerprint { return a }
            if path == adapter { throw SACError.adapterMismatch(expected: fingerprint, found: a.fingerprint) }
        }
        throw CLIError("the KV file was encoded with adapter \(fingerprint), which is not at --adapter or in the config; pass --adapter PATH of that adapter")
    }

    private func loadAdapter(_ path: String, model: LlamaModel) throws -> SACAdapter {
        do { return try SACAdapter.load(path: path, for: model) } catch { throw CLIError("\(error)") }
    }
}

/// Reads a text context: UTF-8, not empty, not binary.
func readTextContext(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
    guard !data.contains(0), let text = String(data: data, encoding: .utf8) else {
        throw CLIError("\(path) is not UTF-8 text; convert it to UTF-8 (e.g. iconv -t UTF-8) first")
    }
    guard !text.allSatisfy(\.isWhitespace) else { throw CLIError("\(path) is empty; there is nothing to compress") }
    return text
}

/// Bytes of a KV cache of `rows` tokens at fp16, all layers, keys and values.
func fp16KVBytes(rows: Int, model: LlamaModel) -> Int { rows * model.config.layerCount * 2 * model.config.kvDim * 2 }
