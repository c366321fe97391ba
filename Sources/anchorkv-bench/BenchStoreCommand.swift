import ArgumentParser
import Foundation
import KVStore
import KnowledgeBase
import LLM
import SAC

/// Store costs: ingest vs plain compression of the same documents, query time-to-first-token
/// from stored KV vs re-prefilling the same windows, bytes per source token, and what LZ4 does
/// to real anchor-KV records. Uses a random adapter of the shipped rank (cost does not depend
/// on trained values) and a temporary store.
struct BenchStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store", abstract: "Measure the store's ingest and query costs.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Folder of sample documents (default tools/demo/corpus).") var corpus = "tools/demo/corpus"
    @Option(name: .long, help: "Compression ratio.") var ratio = 15
    @Option(name: .long, help: "LoRA rank of the random adapter.") var rank = 32
    @Option(name: .long, help: "Windows per query.") var windows = 4
    @Option(name: .long, help: "Timed repeats (after one warm-up).") var repeats = 3

    func run() throws {
        let model = try modelOptions.load()
        let adapter = try SACAdapter.random(for: model, ratio: ratio, rank: rank)
        let (docs, _) = DocumentSource.read(paths: [corpus])
        guard !docs.isEmpty else { throw CLIError("no documents in \(corpus)") }
        // One long document of `windows` full windows, from the sample texts repeated.
        var long = ""
        while model.tokenizer.encode(long, parseSpecial: false).count < windows * 510 { long += docs.map(\.text).joined(separator: "\n") }
        let encoder = try SACEncoder(model: model, mode: .adapter(adapter))
        var ids = encoder.contextTokens(long)
        ids = Array(ids.prefix(windows * 510))
        let text = model.tokenizer.decode(Array(ids.dropFirst(encoder.contextTokens("").count)), skipSpecial: true)
        let set = docs + [SourceDocument(id: "long", title: "long", text: text, origin: "bench")]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        var rows: [String] = []

        // 1. ingest vs compression alone, interleaved per repeat.
        var compressT: [Double] = [], ingestT: [Double] = []
        var tokens = 0
        for rep in 0...repeats {
            let t0 = Clock.now()
            for d in set { _ = try encoder.compress(text: d.text) }
            let t1 = Clock.now()
            try? FileManager.default.removeItem(atPath: dir)
            let kb = try KnowledgeBase(store: try KnowledgeBase.openStore(path: dir, model: model, create: true), model: model, adapter: adapter, ratio: ratio)
            tokens = 0
            let t2 = Clock.now()
            for d in set { tokens += try kb.ingest(d).record.tokens }
            let t3 = Clock.now()
            if rep > 0 { compressT.append(t1 - t0); ingestT.append(t3 - t2) }
        }
        rows.append(String(format: "| ingest vs compression (%d docs, %d tokens, r=%d) | %.0f tokens/s | %.0f tokens/s | store overhead %.1f%% (min %.1f%%) |",
                           set.count, tokens, ratio, Double(tokens) / median(ingestT), Double(tokens) / median(compressT),
                           (median(ingestT) / median(compressT) - 1) * 100, (ingestT.min()! / compressT.min()! - 1) * 100))

        // 2. time to first token: stored KV of `windows` windows vs re-prefilling them.
        let kb = try KnowledgeBase(store: try KnowledgeBase.openStore(path: dir, model: model, create: false), model: model, adapter: adapter, ratio: ratio)
        guard let doc = try kb.store.document("long") else { throw CLIError("bench document missing") }
        let decoder = try SACDecoder(model: model, adapter: adapter)
        let question = "Which canal links the Danube to the Rhine?"
        var fromStore: [Double] = [], reprefill: [Double] = []
        let q = decoder.layout.questionTokens(question, model: model)
        let session = model.makeSession(capacity: ids.count + q.count + 1)
        for rep in 0...repeats {
            let t0 = Clock.now()
            let ctx = try kb.context(of: (0..<doc.windows).map { (doc, $0) })
            let block = decoder.firstBlock(question: question, contextLength: ctx.contextLength)
            _ = try decoder.load(ctx, extraCapacity: block.tokens.count).forward(block.tokens, options: block.options)
            let t1 = Clock.now()
            session.cache.reset()
            let all = ids + q
            _ = try session.forward(all, options: ForwardOptions(positions: (1...all.count).map { Int32($0) }))
            let t2 = Clock.now()
            if rep > 0 { fromStore.append(t1 - t0); reprefill.append(t2 - t1) }
        }
        rows.append(String(format: "| first token, %d windows (%d tokens), r=%d | %.3f s (stored KV) | %.3f s (re-prefill) | %.1fx faster (min %.1fx) |",
                           doc.windows, ids.count, ratio, median(fromStore), median(reprefill), median(reprefill) / median(fromStore),
                           reprefill.min()! / fromStore.min()!))

        // 3. bytes per source token, and LZ4 on real records.
        let stats = try kb.store.stats()
        let full = Double(model.config.layerCount * 2 * model.config.kvDim * 2)
        rows.append(String(format: "| bytes per source token (r=%d, fp16) | %.0f stored | %.0f full fp16 KV | %.1fx smaller |",
                           ratio, Double(stats.kvBytes) / Double(stats.tokens), full, full * Double(stats.tokens) / Double(stats.kvBytes)))
        var raw = 0, lz4 = 0, shuffled = 0
        for w in 0..<doc.windows {
            for r in try kb.store.loadKV(doc, window: w, layers: model.config.layerCount, expect: nil, snapshot: nil) {
                raw += TensorCodec.encode(r, dtype: .f16, compression: .none).count
                lz4 += TensorCodec.encode(r, dtype: .f16, compression: .lz4).count
                shuffled += TensorCodec.encode(r, dtype: .f16, compression: .shuffleLZ4).count
            }
        }
        rows.append(String(format: "| LZ4 on %d real fp16 records | raw %d bytes | lz4 %.3fx, shuffle+lz4 %.3fx of raw | |",
                           doc.windows * model.config.layerCount, raw, Double(lz4) / Double(raw), Double(shuffled) / Double(raw)))
        print("| measure | AnchorKV | baseline | ratio |\n|---|---:|---:|---:|")
        rows.forEach { print($0) }
    }
}
