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
    @Option(name: .long, parsing: .upToNextOption, help: "Batch sizes for batched decode (each sequence with --context tokens in its cache; 1 = the plain decode path).") var batch: [Int] = []
    @Option(name: .long, help: "Cached tokens per sequence for --batch.") var context = 256
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

        /// One warm-up, then `repeats` timed runs of `body`; `setup` runs untimed before each.
        func measure(_ name: String, tokens: Int, extra: [String: Any] = [:], setup: () throws -> Void = {}, _ body: () throws -> Void) throws {
            try setup()
            try body() // warm-up
            var rates: [Double] = []
            for _ in 0..<repeats {
                try setup()
                let t0 = Clock.now()
                try body()
                rates.append(Double(tokens) / (Clock.now() - t0))
            }
            rates.sort()
            let median = rates.count % 2 == 1 ? rates[rates.count / 2] : (rates[rates.count / 2 - 1] + rates[rates.count / 2]) / 2
            results.append(["test": name, "tokens": tokens, "min": rates.first!, "median": median, "max": rates.last!, "all": rates]
                .merging(extra) { a, _ in a })
            if !json { StandardError.write(String(format: "%-26@ min %8.1f  median %8.1f  max %8.1f tokens/s\n", name as NSString, rates.first!, median, rates.last!)) }
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
        // Continuous batching: B sequences, each with its own cache of `context` tokens, decode
        // genTokens tokens each, one batched step per token (InferenceSession.step) vs the same
        // B sequences stepped one after another. tokens/s counts every sequence's tokens.
        for b in batch where genTokens > 0 {
            let sessions = (0..<b).map { _ in model.makeSession(capacity: context + genTokens) }
            let prompts = (0..<b).map { _ in randomTokens(context) }
            let ids = (0..<b).map { _ in randomTokens(genTokens) }
            func reset() throws {
                for (s, p) in zip(sessions, prompts) { s.cache.reset(); _ = try s.forward(p, options: ForwardOptions(output: .none)) }
            }
            for batched in [true, false] where batched || b > 1 {
                // The prefill is outside the timed part: reset, then time the decode steps only.
                try measure("tg\(genTokens) x\(b) \(batched ? "batched" : "one by one")", tokens: b * genTokens,
                            extra: ["batch": b, "batched": batched, "context": context], setup: reset) {
                    try runSteps(sessions, ids, batched: batched)
                }
            }
        }
        let summary: [String: Any] = [
            "engine": "anchorkv", "model": model.source, "threads": ProcessInfo.processInfo.environment["ANCHORKV_THREADS"] ?? "all",
            "repeats": repeats, "results": results,
        ]
        if json { print(jsonString(summary)) }
    }

    func runSteps(_ sessions: [InferenceSession], _ ids: [[Int32]], batched: Bool) throws {
        for t in 0..<ids[0].count {
            let tokens = ids.map { $0[t] }
            if batched {
                _ = try InferenceSession.step(sessions, tokens: tokens)
            } else {
                for (s, id) in zip(sessions, tokens) { _ = try s.forward([id]) }
            }
        }
    }
}
