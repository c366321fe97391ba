import Foundation
import LLM
import SAC
import Synchronization

/// Which SAC encoder a use case asks for: the configured adapter of a ratio, a named adapter
/// file, or training-free anchors. Every field left nil falls back to the configuration.
public struct AdapterChoice: Sendable, Equatable {
    public var ratio: Int?
    public var adapterPath: String?
    public var noAdapter: Bool
    public init(ratio: Int? = nil, adapterPath: String? = nil, noAdapter: Bool = false) {
        self.ratio = ratio; self.adapterPath = adapterPath; self.noAdapter = noAdapter
    }
}

/// The one adapter catalogue: ratio -> adapter file (config sac.adapters), adapters loaded once
/// and found again by fingerprint (what stores, snapshots and KV files record).
public final class AdapterCatalog: Sendable {
    let model: LlamaModel
    let files: [Int: String]
    let defaultRatio: Int
    /// Loaded adapters by file path; loading checks the file against the model.
    private let loaded = Mutex<[String: SACAdapter]>([:])

    public init(model: LlamaModel, config: AppConfig) {
        self.model = model
        files = config.sacAdapters
        defaultRatio = config.sacRatio
    }

    func load(_ path: String) throws(CoreError) -> SACAdapter {
        if let a = loaded.withLock({ $0[path] }) { return a }
        let a = try CoreError.mapping { try SACAdapter.load(path: path, for: model) }
        loaded.withLock { $0[path] = a }
        return a
    }

    /// The encoder for new KV: (adapter or nil for training-free anchors, ratio).
    public func encoder(_ choice: AdapterChoice) throws(CoreError) -> (adapter: SACAdapter?, ratio: Int) {
        if choice.noAdapter {
            if choice.adapterPath != nil { throw .invalidInput("--adapter and --no-adapter exclude each other") }
            return (nil, choice.ratio ?? defaultRatio)
        }
        if let path = choice.adapterPath {
            let a = try load(path)
            if let r = choice.ratio, r != a.ratio { throw .invalidInput("the adapter \(path) is for ratio \(a.ratio), not \(r)") }
            return (a, a.ratio)
        }
        let r = choice.ratio ?? defaultRatio
        guard r >= 1 else { throw .invalidInput("the ratio must be >= 1, not \(r)") }
        if let path = files[r], FileManager.default.fileExists(atPath: path) { return (try load(path), r) }
        // Ratio 1 without a full-context adapter is the plain model's full KV: nothing to train.
        if r == 1 { return (nil, 1) }
        let configured = files[r].map { " (the config names \($0), which does not exist)" } ?? ""
        throw .invalidInput("no SAC adapter for ratio \(r)\(configured); name an adapter file (--adapter PATH, or sac.adapters in the config), choose a ratio that has one, or ask for training-free anchors (--no-adapter, \"no_adapter\": true)")
    }

    /// The adapter that decodes KV encoded with `fingerprint` at `ratio` (nil fingerprint: none):
    /// the named file if given (it must match), else the configured one for the ratio.
    public func decoder(fingerprint: String?, ratio: Int, adapterPath: String? = nil) throws(CoreError) -> SACAdapter? {
        guard let fingerprint, fingerprint != "none" else { return nil }
        if let path = adapterPath {
            let a = try load(path)
            guard a.fingerprint == fingerprint else {
                throw CoreError(.modelMismatch, "the KV was encoded with adapter \(fingerprint), but \(path) is adapter \(a.fingerprint); name the adapter it was made with")
            }
            return a
        }
        if let a = configured(ratio: ratio, fingerprint: fingerprint) { return a }
        throw CoreError(.notFound, "the KV was encoded with adapter \(fingerprint) at ratio \(ratio), which the config (sac.adapters) does not have; name that adapter's file (--adapter PATH)")
    }

    /// The configured adapter of `ratio` when it is the one with `fingerprint`, else nil.
    func configured(ratio: Int, fingerprint: String) -> SACAdapter? {
        guard let path = files[ratio], FileManager.default.fileExists(atPath: path), let a = try? load(path),
              a.fingerprint == fingerprint else { return nil }
        return a
    }
}
