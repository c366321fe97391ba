import AnchorKVCore
import ArgumentParser
import Foundation
import LLM
import SAC

@main
struct AnchorKVBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "anchorkv-bench",
        abstract: "AnchorKV's benchmarks and answer-quality evaluation (developer tools; results in docs/benchmarks.md and docs/quality.md).",
        subcommands: [BenchCommand.self, BenchSACCommand.self, BenchStoreCommand.self, BenchSnapshotCommand.self, EvalCommand.self])
}

/// --model, --threads and --config: the model the measurement runs, found as `anchorkv` finds it.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model: a .gguf file or a Hugging Face directory (default: as anchorkv finds it).") var model: String?
    @Option(name: .long, help: "Worker threads (default: $ANCHORKV_THREADS, the config file, or all cores).") var threads: Int?
    @Option(name: .long, help: "Config file (default: as anchorkv finds it).") var config: String?

    func appConfig() throws -> AppConfig {
        do { return try AppConfig.load(AppConfig.Overrides(configPath: config, model: model, threads: threads)) } catch { throw CLIError(error.message) }
    }

    func load() throws -> LlamaModel {
        do { return try KnowledgeService.loadModel(try appConfig()) } catch let e as CoreError { throw CLIError(e.message) }
    }
}

/// --ratio, --adapter and --no-adapter: which SAC encoder a measurement uses.
struct SACOptions: ParsableArguments {
    @Option(name: .long, help: "Compression ratio (default: the config file's sac.ratio).") var ratio: Int?
    @Option(name: .long, help: "SAC adapter file (default: the config file's adapter for the ratio).") var adapter: String?
    @Flag(name: .long, help: "Training-free anchors (plain causal model, only the anchors' KV kept).") var noAdapter = false

    func validate() throws {
        if let r = ratio, r < 1 { throw ValidationError("--ratio must be >= 1") }
        if noAdapter && adapter != nil { throw ValidationError("--adapter and --no-adapter exclude each other") }
    }

    func resolveMode(model: LlamaModel, config: AppConfig) throws -> (mode: EncoderMode, ratio: Int) {
        do {
            let (a, r) = try AdapterCatalog(model: model, config: config).encoder(AdapterChoice(ratio: ratio, adapterPath: adapter, noAdapter: noAdapter))
            return (a.map { .adapter($0) } ?? .plain, r)
        } catch { throw CLIError(error.message) }
    }
}

/// A user-facing failure: printed as "error: ..." with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

enum StandardError {
    static func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}

enum Clock {
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

func jsonString(_ object: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
