import ArgumentParser
import Foundation
import KVStore
import KnowledgeBase
import LLM
import SAC
import Snapshots

/// Snapshot and compaction throughput: export and import MB/s over a store of real encoded
/// documents, and compaction r_from -> r_to windows/s with the bytes it saves. Random adapters
/// of the shipped rank (the cost does not depend on trained values), temporary stores.
struct BenchSnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Measure export/import MB/s and compaction windows/s.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Folder of sample documents (default tools/demo/corpus).") var corpus = "tools/demo/corpus"
    @Option(name: .long, help: "Copies of the sample documents to ingest.") var copies = 4
    @Option(name: .long, help: "Ratio the store is ingested at.") var fromRatio = 5
    @Option(name: .long, help: "Ratio compaction goes to.") var toRatio = 15
    @Option(name: .long, help: "LoRA rank of the random adapters.") var rank = 16
    @Option(name: .long, help: "Timed repeats of export and import.") var repeats = 5
    @Flag(name: .long, help: "Print one JSON object.") var json = false

    func run() throws {
        let model = try modelOptions.load()
        let from = try SACAdapter.random(for: model, ratio: fromRatio, rank: rank, seed: 1)
        let to = try SACAdapter.random(for: model, ratio: toRatio, rank: rank, seed: 2)
        let (samples, _) = DocumentSource.read(paths: [corpus])
        guard !samples.isEmpty else { throw CLIError("no documents in \(corpus)") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-bench-snap-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

        let store = try KnowledgeBase.openStore(path: dir + "/source", model: model, create: true)
        let kb = try KnowledgeBase(store: store, model: model, adapter: from, ratio: fromRatio)
        for c in 0..<copies {
            for d in samples {
                _ = try kb.ingest(SourceDocument(id: "\(d.id)-\(c)", title: d.title, text: d.text + "\nCopy \(c).", origin: d.origin))
            }
        }
        let file = dir + "/s.akvs"
        var exportMBs: [Double] = [], importMBs: [Double] = []
        var bytes = 0
        for rep in 0..<repeats {
            let e = try SnapshotExporter.export(store: store, to: file)
            bytes = e.bytes
            let target = try KnowledgeBase.openStore(path: dir + "/import-\(rep)", model: model, create: true)
            let i = try SnapshotImporter.importSnapshot(from: file, into: target)
            exportMBs.append(e.megabytesPerSecond)
            importMBs.append(i.megabytesPerSecond)
        }
        let report = try kb.compact(toRatio: toRatio, adapter: to)
        let stats = try store.stats()
        let obj: [String: Any] = [
            "documents": stats.documents, "windows": stats.windows, "tokens": stats.tokens, "snapshot_bytes": bytes,
            "export_mb_per_s": ["min": exportMBs.min()!, "median": median(exportMBs), "max": exportMBs.max()!],
            "import_mb_per_s": ["min": importMBs.min()!, "median": median(importMBs), "max": importMBs.max()!],
            "compaction": ["from_ratio": fromRatio, "to_ratio": toRatio, "windows": report.windows, "seconds": report.seconds,
                           "windows_per_s": report.windowsPerSecond, "tokens_per_s": report.seconds > 0 ? Double(report.tokens) / report.seconds : 0,
                           "kv_bytes_before": report.kvBytesBefore, "kv_bytes_after": report.kvBytesAfter,
                           "disk_bytes_before": report.diskBytesBefore, "disk_bytes_after": report.diskBytesAfter],
            "rank": rank, "repeats": repeats,
        ]
        if json { print(jsonString(obj)); return }
        print("| measure | min | median | max |\n|---|---:|---:|---:|")
        print(String(format: "| export MB/s (%d docs, %d windows, %.1f MB) | %.0f | %.0f | %.0f |", stats.documents, stats.windows, Double(bytes) / 1e6,
                     exportMBs.min()!, median(exportMBs), exportMBs.max()!))
        print(String(format: "| import MB/s (verify + one atomic batch) | %.0f | %.0f | %.0f |", importMBs.min()!, median(importMBs), importMBs.max()!))
        print(String(format: "\ncompaction r=%d -> r=%d: %d windows (%d tokens) in %.1f s = %.2f windows/s; KV %d -> %d bytes (%.1fx smaller); disk %d -> %d bytes",
                     fromRatio, toRatio, report.windows, report.tokens, report.seconds, report.windowsPerSecond, report.kvBytesBefore,
                     report.kvBytesAfter, Double(report.kvBytesBefore) / Double(max(1, report.kvBytesAfter)), report.diskBytesBefore, report.diskBytesAfter))
    }
}
