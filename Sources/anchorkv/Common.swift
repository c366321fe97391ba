import AnchorKVCore
import ArgumentParser
import Foundation

/// --model, --threads and --config, shared by every command.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Model: a .gguf file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).",
                                            discussion: "Defaults to $ANCHORKV_MODEL, else the config file's model, else the model tools/setup.sh installed in models/."))
    var model: String?

    @Option(name: .long, help: "Worker threads (default: $ANCHORKV_THREADS, the config file, or all cores).")
    var threads: Int?

    @Option(name: .long, help: "Config file (default: $ANCHORKV_CONFIG, else config/anchorkv.json in the working folder, the executable's folder or a parent, else ~/.config/anchorkv/anchorkv.json).")
    var config: String?

    /// The settings: flags > environment > config file > defaults.
    func appConfig(store: String? = nil) throws -> AppConfig {
        try reporting { try AppConfig.load(AppConfig.Overrides(configPath: config, model: model, threads: threads, store: store)) }
    }
}

/// --store, shared by the store commands.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store: a folder, or redis://HOST:PORT[,HOST:PORT...]/NAME for a Redis Cluster (default: $ANCHORKV_STORE, the config file's store, data/store).") var store: String?
}

/// --ratio, --adapter and --no-adapter: which SAC encoder a command uses.
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

    var choice: AdapterChoice { AdapterChoice(ratio: ratio, adapterPath: adapter, noAdapter: noAdapter) }
}

/// Runs a use case; a CoreError is printed as "error: ..." and exits with its status
/// (CoreError.exitStatusHelp), with no stack trace.
func reporting<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as CoreError {
        StandardError.write("error: \(e.message)\n")
        throw ExitCode(e.exitCode)
    }
}

enum StandardError {
    static func write(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// Writes a line to stdout at once (unbuffered: a printed line means the work is done).
func printNow(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The one progress bar of the CLI: a line on stderr, redrawn on a terminal; elsewhere (logs,
/// pipes) one line per update, or per `every` units and at the end.
struct ProgressBar {
    let total: Int
    let unit: String
    let every: Int
    let start = ContinuousClock.now
    let tty = isatty(2) == 1

    init(total: Int, unit: String = "docs", every: Int = 1) { self.total = total; self.unit = unit; self.every = max(every, 1) }

    /// `rate`: what the rate counts (e.g. tokens), nil for no rate.
    func update(done: Int, total: Int? = nil, label: String, rate: (count: Int, unit: String)? = nil) {
        let total = total ?? self.total
        guard tty || done % every == 0 || done == total else { return }
        let elapsed = (ContinuousClock.now - start).seconds
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let width = 24, filled = total > 0 ? width * min(done, total) / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rateText = rate.map { String(format: "  %.0f %@/s", elapsed > 0 ? Double($0.count) / elapsed : 0, $0.unit) } ?? ""
        let line = String(format: "[%@] %d/%d %@%@  ETA %d:%02d  %@", bar, done, total, unit, rateText, Int(eta) / 60, Int(eta) % 60, String(label.prefix(40)))
        StandardError.write(tty ? "\r\u{1B}[K" + line : line + "\n")
    }

    func finish() { if tty { StandardError.write("\n") } }
}

/// Exit status lines of the store commands' --help.
let exitStatusHelp = CoreError.exitStatusHelp
