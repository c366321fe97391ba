import ArgumentParser
import Foundation
import KVStore
import KnowledgeBase
import SAC
import Snapshots

/// Opens an existing store for byte-level work (no model needed: fingerprints are compared as recorded).
func openStoreWithoutModel(_ m: ModelOptions, _ s: StoreOptions) throws -> KVStore {
    let cfg = try m.appConfig()
    do { return try KVStore(path: s.path(cfg), modelFingerprint: nil, modelName: nil, create: false) } catch { throw CLIError("\(error)") }
}

func describe(_ m: SnapshotManifest) -> [String: Any] {
    ["format": m.format, "format_version": m.formatVersion, "created_at": m.createdAt, "model": m.modelName,
     "model_fingerprint": m.modelFingerprint, "adapters": m.adapters, "ratios": m.ratios, "documents": m.documents,
     "windows": m.windows, "kv_records": m.kvRecords, "kv_bytes": m.kvBytes, "tokens": m.tokens, "layers": m.layers,
     "source_store": m.sourceStore]
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the store (or some documents) to one self-describing, checksummed snapshot file.",
        discussion: "Read from one consistent RocksDB snapshot and streamed to FILE.partial, which is renamed to FILE when complete. Tensor records are copied byte for byte. Move the file to another machine and `anchorkv import` it there.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Export only these document ids (repeatable; default: all).") var doc: [String] = []
    @Option(name: .shortAndLong, help: "Snapshot file to write.") var output: String
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        let store = try openStoreWithoutModel(modelOptions, storeOptions)
        let tty = isatty(2) == 1
        let r: ExportReport
        do {
            r = try SnapshotExporter.export(store: store, documents: doc.isEmpty ? nil : doc, to: output) { done, total, bytes in
                let line = String(format: "exported %d/%d documents, %.1f MB", done, total, Double(bytes) / 1e6)
                if tty { StandardError.write("\r\u{1B}[K" + line) } else if done == total || done % 100 == 0 { StandardError.write(line + "\n") }
            }
        } catch { throw CLIError("\(error)") }
        if tty { StandardError.write("\n") }
        var obj = describe(r.manifest)
        obj["file"] = r.path; obj["bytes"] = r.bytes; obj["seconds"] = r.seconds; obj["mb_per_s"] = r.megabytesPerSecond
        if json { print(jsonString(obj)); return }
        print(String(format: "wrote %@: %d documents, %d windows, %d KV records, %d bytes in %.2f s (%.1f MB/s)",
                     r.path, r.manifest.documents, r.manifest.windows, r.manifest.kvRecords, r.bytes, r.seconds, r.megabytesPerSecond))
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a snapshot file into a store (created when missing).",
        discussion: "The whole file is verified first (format, version, model fingerprint, every checksum); then all new documents land in one atomic write, or nothing does. Documents identical to the store's are skipped, so importing twice is a no-op. Documents whose id the store holds with other content follow --on-conflict.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "Snapshot file.") var file: String
    @Option(name: .long, help: "fail (default: change nothing and list the ids), skip (keep the store's), replace (take the snapshot's).") var onConflict = "fail"
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        guard let policy = ConflictPolicy(rawValue: onConflict) else { throw ValidationError("--on-conflict must be fail, skip or replace") }
        let cfg = try modelOptions.appConfig()
        let path = storeOptions.path(cfg)
        let report: ImportReport
        do {
            let store: KVStore
            if FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("CURRENT")) {
                store = try KVStore(path: path, modelFingerprint: nil, modelName: nil, create: false)
            } else {
                // Verify the whole file before creating anything.
                let m = try SnapshotReader.read(path: file)
                store = try KVStore(path: path, modelFingerprint: m.modelFingerprint, modelName: m.modelName, create: true)
            }
            let tty = isatty(2) == 1
            report = try SnapshotImporter.importSnapshot(from: file, into: store, onConflict: policy) { p in
                switch p {
                case .verified(let n, let total):
                    let line = "verified \(n)/\(total) documents"
                    if tty { StandardError.write("\r\u{1B}[K" + line) } else if n == total || n % 100 == 0 { StandardError.write(line + "\n") }
                case .writing(let n):
                    StandardError.write((tty ? "\n" : "") + "writing \(n) documents in one atomic batch\n")
                }
            }
        } catch { throw CLIError("\(error)") }
        let obj: [String: Any] = [
            "store": path, "file": file, "added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
            "repaired": report.repaired, "skipped": report.skipped, "bytes": report.bytes, "seconds": report.seconds, "mb_per_s": report.megabytesPerSecond,
        ]
        if json { print(jsonString(obj)); return }
        print(String(format: "imported %@ into %@: %d added, %d replaced, %d unchanged, %d repaired, %d skipped (conflicts kept) in %.2f s (%.1f MB/s)",
                     file, path, report.added.count, report.replaced.count, report.unchanged.count, report.repaired.count, report.skipped.count,
                     report.seconds, report.megabytesPerSecond))
    }
}

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Look into snapshot files.",
                                                    subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a snapshot's manifest without importing it.")
        @Argument(help: "Snapshot file.") var file: String
        @Flag(name: .long, help: "Also read the whole file and check every checksum and count.") var verify = false
        @Flag(name: .long, help: "Print one JSON object.") var json = false
        func run() throws {
            var obj: [String: Any]
            do {
                obj = describe(verify ? try SnapshotReader.read(path: file) : try SnapshotReader.manifest(path: file))
            } catch { throw CLIError("\(error)") }
            obj["file"] = file
            obj["bytes"] = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            if verify { obj["verified"] = true }
            if json { print(jsonString(obj)); return }
            for k in obj.keys.sorted() { print("\(k.padding(toLength: 18, withPad: " ", startingAt: 0))\(obj[k]!)") }
        }
    }
}

struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Re-encode stored documents at another ratio (e.g. 5 -> 15 for cold data) and return the space.",
        discussion: "Each document is re-encoded from its stored window tokens and swapped atomically; a crash leaves every document at its old or new ratio, and rerunning continues. RocksDB's compaction runs afterwards. The adapter for the target ratio comes from --adapter or the config; --no-adapter uses training-free anchors.")

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
    }

    static func parseAge(_ s: String, now: Date = Date()) throws -> Date {
        if let d = ISO8601DateFormatter().date(from: s) { return d }
        let units: [Character: Double] = ["d": 86400, "h": 3600, "m": 60, "s": 1]
        if let u = s.last, let mult = units[u], let n = Double(s.dropLast()), n >= 0 { return now.addingTimeInterval(-n * mult) }
        throw ValidationError("--older-than takes an age like 30d, 12h, 90m, 45s or an ISO 8601 date, not '\(s)'")
    }

    func run() throws {
        let cutoff = try olderThan.map { try Self.parseAge($0) }
        let cfg = try modelOptions.appConfig()
        let model = try modelOptions.load()
        var sac = SACOptions()
        sac.ratio = toRatio
        sac.adapter = adapter
        sac.noAdapter = noAdapter
        let mode = try sac.resolveMode(model: model, config: cfg).mode
        let targetAdapter: SACAdapter? = { if case .adapter(let a) = mode { return a } else { return nil } }()
        let report: CompactionReport
        do {
            let store = try KnowledgeBase.openStore(path: storeOptions.path(cfg), model: model, create: false)
            let kb = try KnowledgeBase(store: store, model: model, adapter: targetAdapter, ratio: toRatio)
            let bar = ProgressBar(total: 0)
            report = try kb.compact(toRatio: toRatio, adapter: targetAdapter, documents: doc.isEmpty ? nil : doc, olderThan: cutoff) { done, total, id in
                ProgressBar(total: total, start: bar.start).update(done: done, tokens: 0, label: id, unit: nil)
            }
            bar.finish()
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
        for f in report.failed { StandardError.write("failed \(f.id): \(f.error)\n") }
        let obj: [String: Any] = [
            "to_ratio": report.toRatio, "adapter": report.adapter, "compacted": report.compacted, "already_done": report.alreadyDone,
            "failed": report.failed.map { ["id": $0.id, "error": $0.error] }, "windows": report.windows, "tokens": report.tokens,
            "kv_bytes_before": report.kvBytesBefore, "kv_bytes_after": report.kvBytesAfter,
            "disk_bytes_before": report.diskBytesBefore, "disk_bytes_after": report.diskBytesAfter,
            "seconds": report.seconds, "windows_per_s": report.windowsPerSecond,
        ]
        if json { print(jsonString(obj)) } else {
            print(String(format: "compacted %d documents to ratio %d (%d already there, %d failed): %d windows in %.1f s (%.2f windows/s); KV %d -> %d bytes; on disk %d -> %d bytes",
                         report.compacted.count, toRatio, report.alreadyDone.count, report.failed.count, report.windows, report.seconds,
                         report.windowsPerSecond, report.kvBytesBefore, report.kvBytesAfter, report.diskBytesBefore, report.diskBytesAfter))
        }
        if !report.failed.isEmpty { throw ExitCode(1) }
    }
}
