import AnchorKVCore
import ArgumentParser
import Foundation

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the store (or some documents) to one self-describing, checksummed snapshot file.",
        discussion: "Read from one consistent RocksDB snapshot and streamed to FILE.partial, which is renamed to FILE when complete. Tensor records are copied byte for byte. Move the file to another machine and `anchorkv import` it there.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Export only these document ids (repeatable; default: all).") var doc: [String] = []
    @Option(name: .shortAndLong, help: "Snapshot file to write.") var output: String
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let bar = ProgressBar(total: 0, every: 100)
        let r = try reporting {
            try KnowledgeService.export(config: cfg, documents: doc.isEmpty ? nil : doc, to: output) { done, total, bytes in
                bar.update(done: done, total: total, label: String(format: "exported, %.1f MB", Double(bytes) / 1e6))
            }
        }
        bar.finish()
        if json { print(Results.json(r)); return }
        print(String(format: "wrote %@: %d documents, %d windows, %d KV records, %d bytes in %.2f s (%.1f MB/s)",
                     r.file, r.snapshot.documents, r.snapshot.windows, r.snapshot.kvRecords, r.bytes, r.seconds, r.mbPerS))
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a snapshot file into a store (created when missing).",
        discussion: "The whole file is verified first (format, version, model fingerprint, every checksum); then all new documents land in one atomic write, or nothing does. Documents identical to the store's are skipped, so importing twice is a no-op. Documents whose id the store holds with other content follow --on-conflict.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "Snapshot file.") var file: String
    @Option(name: .long, help: "fail (default: change nothing and list the ids), skip (keep the store's), replace (take the snapshot's).") var onConflict = "fail"
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        guard let policy = ConflictPolicy(rawValue: onConflict) else { throw ValidationError("--on-conflict must be fail, skip or replace") }
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let bar = ProgressBar(total: 0, every: 100)
        let r = try reporting {
            try KnowledgeService.importSnapshot(config: cfg, file: file, onConflict: policy) { p in
                switch p {
                case .verified(let n, let total): bar.update(done: n, total: total, label: "verified")
                case .writing(let n):
                    bar.finish()
                    StandardError.write("writing \(n) documents in one atomic batch\n")
                }
            }
        }
        if json { print(Results.json(r)); return }
        print(String(format: "imported %@ into %@: %d added, %d replaced, %d unchanged, %d repaired, %d skipped (conflicts kept) in %.2f s (%.1f MB/s)",
                     file, r.store, r.added.count, r.replaced.count, r.unchanged.count, r.repaired.count, r.skipped.count, r.seconds, r.mbPerS))
    }
}

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Look into snapshot files.",
                                                    discussion: exitStatusHelp, subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a snapshot's manifest without importing it.")
        @Argument(help: "Snapshot file.") var file: String
        @Flag(name: .long, help: "Also read the whole file and check every checksum and count.") var verify = false
        @Flag(name: .long, help: "Print one JSON object.") var json = false
        func run() throws {
            let info = try reporting { try KnowledgeService.inspectSnapshot(file: file, verify: verify) }
            if json { print(Results.json(info)); return }
            // The same fields as --json, one per line.
            let data = (try? Results.encoder.encode(info)) ?? Data()
            let obj = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
            for k in obj.keys.sorted() { print("\(k.padding(toLength: 18, withPad: " ", startingAt: 0))\(obj[k]!)") }
        }
    }
}

struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Re-encode stored documents at another ratio (e.g. 5 -> 15 for cold data) and return the space.",
        discussion: "Each document is re-encoded from its stored window tokens and swapped atomically; a crash leaves every document at its old or new ratio, and rerunning continues. RocksDB's compaction runs after each chunk of documents. The adapter for the target ratio comes from --adapter or the config; --no-adapter uses training-free anchors. Exit status 1 when a document failed.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Target ratio.") var toRatio: Int
    @Option(name: .long, help: "SAC adapter for the target ratio (default: the config's).") var adapter: String?
    @Flag(name: .long, help: "Training-free anchors at the target ratio (no adapter).") var noAdapter = false
    @Option(name: .long, help: "Only these document ids (repeatable).") var doc: [String] = []
    @Option(name: .long, help: "Only documents ingested before this age (e.g. 30d, 12h, 90m) or ISO 8601 date.") var olderThan: String?
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        if toRatio < 1 { throw ValidationError("--to-ratio must be >= 1") }
        if noAdapter && adapter != nil { throw ValidationError("--adapter and --no-adapter exclude each other") }
        if let olderThan { do { _ = try KnowledgeService.parseAge(olderThan) } catch { throw ValidationError("--older-than: \(error.message)") } }
    }

    func run() throws {
        let cutoff = try olderThan.map { a in try reporting { try KnowledgeService.parseAge(a) } }
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let choice = AdapterChoice(ratio: toRatio, adapterPath: adapter, noAdapter: noAdapter)
        // The knowledge base opened at the target ratio: the store must not hold it with another adapter.
        let service = try reporting { try KnowledgeService.open(config: cfg, .init(adapter: choice)) }
        let bar = ProgressBar(total: 0)
        let r = try reporting {
            try service.compact(toRatio: toRatio, adapter: choice, documents: doc.isEmpty ? nil : doc, olderThan: cutoff) { done, total, message in
                bar.update(done: done, total: total, label: message)
            }
        }
        bar.finish()
        for f in r.failed { StandardError.write("failed \(f.id): \(f.error)\n") }
        if json { print(Results.json(r)) } else {
            print(String(format: "compacted %d documents to ratio %d (%d already there, %d failed): %d windows in %.1f s (%.2f windows/s); KV %d -> %d bytes; on disk %d -> %d bytes",
                         r.compacted.count, toRatio, r.alreadyDone.count, r.failed.count, r.windows, r.seconds,
                         r.windowsPerS, r.kvBytesBefore, r.kvBytesAfter, r.diskBytesBefore, r.diskBytesAfter))
        }
        if !r.failed.isEmpty { throw ExitCode(1) }
    }
}
