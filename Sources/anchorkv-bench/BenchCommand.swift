import ArgumentParser
import Foundation
import LLM

/// Prefill and decode throughput, measured the way llama-bench measures pp/tg so the two can be
/// compared in one run (tools/bench/run_engine_bench.sh): random token ids, empty cache per
/// repeat, logits for the last prompt row only, one warm-up run first.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Measure prefill and decode tokens/s of the engine.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, parsing: .upToNextOption, help: "Prompt lengths to prefill.") var promptTokens: [Int] = [512, 2048]
    @Option(name: .long, help: "Tokens to decode one at a time (0 skips decode).") var genTokens = 64
    @Option(name: .long, help: "Timed repeats per test (after one warm-up).") var repeats = 5
    @Flag(name: .long, help: "Print one JSON object instead of a table.") var json = false

    func validate() throws {
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        guard promptTokens.allSatisfy({ $0 > 0 }), genTokens >= 0 else { throw ValidationError("token counts must be positive") }
    }

    func run() throws {
        let model = try modelOptions.load()
        var rng = SplitMix64(seed: 42)
        let vocab = model.config.vocabSize
        func randomTokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(vocab)) } }
        var results: [[String: Any]] = []

        func measure(_ name: String, tokens: Int, _ body: () throws -> Void) rethrows {
            try body() // warm-up
            var rates: [Double] = []
            for _ in 0..<repeats {
                let t0 = Clock.now()
                try body()
                rates.append(Double(tokens) / (Clock.now() - t0))
            }
            rates.sort()
            let median = rates.count % 2 == 1 ? rates[rates.count / 2] : (rates[rates.count / 2 - 1] + rates[rates.count / 2]) / 2
            results.append(["test": name, "tokens": tokens, "min": rates.first!, "median": median, "max": rates.last!, "all": rates])
            if !json { StandardError.write(String(format: "%-8@ min %8.1f  median %8.1f  max %8.1f tokens/s\n", name as NSString, rates.first!, median, rates.last!)) }
        }

        for n in promptTokens {
            guard n <= model.config.contextLength else { throw CLIError("--prompt-tokens \(n) exceeds the model context \(model.config.contextLength)") }
            let session = model.makeSession(capacity: n)
            let ids = randomTokens(n)
            try measure("pp\(n)", tokens: n) {
                session.cache.reset()
                _ = try session.forward(ids)
            }
        }
        if genTokens > 0 {
            let session = model.makeSession(capacity: genTokens)
            let ids = randomTokens(genTokens)
            try measure("tg\(genTokens)", tokens: genTokens) {
                session.cache.reset()
                for id in ids { _ = try session.forward([id]) }
            }
        }
        let summary: [String: Any] = [
            "engine": "anchorkv", "model": model.source, "threads": ProcessInfo.processInfo.environment["ANCHORKV_THREADS"] ?? "all",
            "repeats": repeats, "results": results,
        ]
        if json { print(jsonString(summary)) }
    }
}
