import ArgumentParser
import Foundation
import KVStore
import KnowledgeBase
import LLM
import SAC

/// --store plus the SAC choice, shared by the store commands.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store folder (default: the config file's store, data/store).") var store: String?

    func path(_ cfg: AppConfig) -> String { store ?? cfg.storePath }
}

/// Opens the store and picks the adapter: the one the store already uses for the ratio, else
/// --adapter / --no-adapter / the config's adapter for the ratio.
func openKnowledgeBase(modelOptions: ModelOptions, storeOptions: StoreOptions, sac: SACOptions, create: Bool,
                       dtype: TensorDType = .f16) throws -> KnowledgeBase {
    let cfg = try modelOptions.appConfig()
    let model = try modelOptions.load()
    let path = storeOptions.path(cfg)
    do {
        let store = try KnowledgeBase.openStore(path: path, model: model, create: create, dtype: dtype)
        // Default: the config's ratio if the store has it (or is new), else the store's own.
        let stored = store.manifest.adapters.keys.compactMap(Int.init).sorted()
        let ratio = sac.ratio ?? (stored.isEmpty || stored.contains(cfg.sacRatio) ? cfg.sacRatio : stored[0])
        var adapter: SACAdapter?
        if let recorded = store.manifest.adapters[String(ratio)], sac.adapter == nil, !sac.noAdapter {
            if recorded != "none" { adapter = try sac.resolveDecoderAdapter(for: recorded, ratio: ratio, model: model, config: cfg) }
        } else if case .adapter(let a) = try sac.resolveMode(model: model, config: cfg).mode {
            adapter = a
        }
        let kb = try KnowledgeBase(store: store, model: model, adapter: adapter, ratio: ratio)
        kb.limits = cfg.ingestLimits
        // Other ratios the store holds (e.g. compacted cold documents) stay answerable when
        // their adapter is the config's for that ratio.
        for (r, fp) in store.manifest.adapters where Int(r) != ratio {
            if fp == "none" { try kb.addDecoder(for: nil); continue }
            if let p = Int(r).flatMap({ cfg.sacAdapters[$0] }), FileManager.default.fileExists(atPath: p),
               let a = try? SACAdapter.load(path: p, for: model), a.fingerprint == fp {
                try kb.addDecoder(for: a)
            }
        }
        return kb
    } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
}

/// A one-line progress bar on stderr (only when stderr is a terminal, else one line per update).
struct ProgressBar {
    let total: Int
    var start = Clock.now()
    let tty = isatty(2) == 1
    /// `unit` names what `tokens` counts for the rate (nil: no rate shown).
    func update(done: Int, tokens: Int, label: String, unit: String? = "tokens") {
        let elapsed = Clock.now() - start
        let rate = elapsed > 0 ? Double(tokens) / elapsed : 0
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let width = 24, filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rateText = unit.map { String(format: "  %.0f %@/s", rate, $0) } ?? ""
        let line = String(format: "[%@] %d/%d docs%@  ETA %@  %@", bar, done, total, rateText, format(eta), String(label.prefix(40)))
        StandardError.write(tty ? "\r\u{1B}[K" + line : line + "\n")
    }
    func finish() { if tty { StandardError.write("\n") } }
    func format(_ s: Double) -> String { String(format: "%d:%02d", Int(s) / 60, Int(s) % 60) }
}

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Compress documents into the store (text/markdown files, folders, JSONL with id/text/title).",
        discussion: "Each document is one atomic write. Unchanged documents are skipped once their stored copy checks whole (every record's checksum and shape); a damaged one is encoded again (repaired). Changed ones replace the old version. Empty, binary or non-UTF-8 inputs are reported and skipped. One line per document on stdout; progress and the summary on stderr.\n\nExit status: 0 when every document was stored (or already was); 1 when a document failed, a path named on the command line could not be read, or no document was found at all.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "Files, folders or .jsonl files.") var paths: [String]
    @Option(name: .long, help: "Element type for a new store: f16 (default), bf16 or int8.") var dtype = "f16"
    @Option(name: .long, help: "LZ4 policy: none (default: measured to save nothing on fp16 KV), auto, lz4, shuffle-lz4.") var compression = "none"
    @Flag(name: .long, help: "Print the summary as one JSON object on stdout (no per-document lines).") var json = false

    func run() throws {
        guard let dt = TensorDType(name: dtype) else { throw ValidationError("--dtype must be f16, bf16 or int8") }
        guard let policy = CompressionPolicy(rawValue: compression) else { throw ValidationError("--compression must be auto, none, lz4 or shuffle-lz4") }
        let (docs, skipped) = DocumentSource.read(paths: paths)
        for s in skipped { StandardError.write("skipped \(s.origin): \(s.reason)\n") }
        let kb = try openKnowledgeBase(modelOptions: modelOptions, storeOptions: storeOptions, sac: sac, create: true, dtype: dt)
        kb.store.compression = policy
        let bar = ProgressBar(total: docs.count)
        var counts: [IngestStatus: Int] = [:]
        var windows = 0, tokens = 0, bytes = 0, failed: [[String: String]] = []
        let t0 = Clock.now()
        for (i, doc) in docs.enumerated() {
            bar.update(done: i, tokens: tokens, label: doc.id)
            do {
                let out = try kb.ingest(doc)
                counts[out.status, default: 0] += 1
                if out.status != .unchanged { windows += out.record.windows; tokens += out.record.tokens; bytes += out.record.kvBytes }
                if let damage = out.damage { StandardError.write("repaired \(doc.id): the stored copy was damaged (\(damage)); encoded again\n") }
                if !json {
                    // Written unbuffered: a printed line means the document is durably stored.
                    FileHandle.standardOutput.write(Data("\(out.status.rawValue)\t\(doc.id)\t\(out.record.windows) windows\t\(out.record.tokens) tokens\t\(out.record.kvBytes) bytes\n".utf8))
                }
            } catch {
                failed.append(["origin": doc.origin, "error": "\(error)"])
                StandardError.write("failed \(doc.origin): \(error)\n")
            }
        }
        bar.update(done: docs.count, tokens: tokens, label: "done")
        bar.finish()
        let seconds = Clock.now() - t0
        let summary: [String: Any] = [
            "documents": docs.count, "added": counts[.added] ?? 0, "replaced": counts[.replaced] ?? 0, "unchanged": counts[.unchanged] ?? 0,
            "repaired": counts[.repaired] ?? 0, "skipped": skipped.map { ["origin": $0.origin, "reason": $0.reason] }, "failed": failed,
            "windows": windows, "tokens": tokens, "bytes": bytes, "bytes_per_token": tokens > 0 ? Double(bytes) / Double(tokens) : 0,
            "seconds": seconds, "tokens_per_second": seconds > 0 ? Double(tokens) / seconds : 0, "ratio": kb.ratio,
            "adapter": kb.adapter?.fingerprint ?? "none", "store": kb.store.path,
        ]
        if json { print(jsonString(summary)) }
        StandardError.write(String(format: "ingested %d documents (%d added, %d replaced, %d unchanged, %d repaired, %d skipped, %d failed): %d windows, %d tokens, %d bytes stored (%.1f bytes/token) in %.1f s (%.0f tokens/s) at ratio %d\n",
                                   docs.count, counts[.added] ?? 0, counts[.replaced] ?? 0, counts[.unchanged] ?? 0, counts[.repaired] ?? 0, skipped.count, failed.count,
                                   windows, tokens, bytes, tokens > 0 ? Double(bytes) / Double(tokens) : 0, seconds,
                                   seconds > 0 ? Double(tokens) / seconds : 0, kb.ratio))
        // A path the user named that could not be read, or nothing to ingest at all, is a failed
        // run: scripts must not take "0 documents" for success.
        let unreadable = skipped.filter { paths.contains($0.origin) }
        if docs.isEmpty { StandardError.write("error: no document found in \(paths.joined(separator: ", "))\n") }
        if !failed.isEmpty || !unreadable.isEmpty || docs.isEmpty { throw ExitCode(1) }
    }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Answer a question from the store's compressed knowledge.",
        discussion: "BM25 picks the top-k windows (or --doc names documents); their stored anchor KVs are laid out one after another and decoded. The answer is the first line of stdout, then the citations; timings on stderr. --json prints one object with answer, citations and timings.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "The question.") var question: String
    @Option(name: .shortAndLong, help: "Windows to retrieve (default 4; with --doc and no -k, every window of those documents).") var k: Int?
    @Option(name: .long, help: "Restrict to these document ids (repeatable).") var doc: [String] = []
    @Option(name: .long, help: "Maximum answer tokens (default: the config's sac.max_answer_tokens).") var maxTokens: Int?
    @Flag(name: .long, help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        guard !question.allSatisfy(\.isWhitespace) else { throw ValidationError("the question is empty") }
        if let k, k <= 0 { throw ValidationError("-k must be positive") }
        let cfg = try modelOptions.appConfig()
        let kb = try openKnowledgeBase(modelOptions: modelOptions, storeOptions: storeOptions, sac: sac, create: false)
        let r: QueryResult
        do {
            r = try kb.query(question, k: doc.isEmpty ? (k ?? 4) : k, documents: doc.isEmpty ? nil : doc, maxTokens: maxTokens ?? cfg.answerMaxTokens)
        } catch { throw CLIError("\(error)") }
        let timings: [String: Any] = ["retrieve_s": r.retrieveSeconds, "load_s": r.loadSeconds, "first_token_s": r.firstTokenSeconds,
                                      "decode_s": r.decodeSeconds, "total_s": r.totalSeconds]
        let citations: [[String: Any]] = r.citations.map {
            ["document": $0.document, "title": $0.title, "window": $0.window, "score": $0.score ?? NSNull(), "snippet": $0.snippet]
        }
        if json {
            print(jsonString(["answer": r.answer, "citations": citations, "timings": timings, "context_tokens": r.contextTokens,
                              "anchors": r.anchors, "ratio": kb.ratio]))
            return
        }
        print(r.answer.replacingOccurrences(of: "\n", with: " "))
        for c in r.citations {
            print("  [\(c.document) #\(c.window)\(c.score.map { String(format: " %.2f", $0) } ?? "")] \(c.title)")
        }
        StandardError.write(String(format: "%d windows, %d context tokens as %d anchors | retrieve %.4f s, load %.4f s, first token %.3f s, decode %.3f s, total %.3f s\n",
                                   r.citations.count, r.contextTokens, r.anchors, r.retrieveSeconds, r.loadSeconds, r.firstTokenSeconds,
                                   r.decodeSeconds, r.totalSeconds))
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show what the store holds.")
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Flag(name: .long, help: "Print one JSON object.") var json = false

    func run() throws {
        let cfg = try modelOptions.appConfig()
        let model = try modelOptions.load()
        let store: KVStore
        do { store = try KnowledgeBase.openStore(path: storeOptions.path(cfg), model: model, create: false) } catch { throw CLIError("\(error)") }
        let s = try store.stats()
        let fullKV = fp16KVBytes(rows: s.tokens, model: model)
        let obj: [String: Any] = [
            "store": store.path, "model": store.manifest.modelName, "model_fingerprint": store.manifest.modelFingerprint,
            "adapters": store.manifest.adapters, "dtype": store.manifest.dtype, "documents": s.documents, "windows": s.windows,
            "tokens": s.tokens, "anchors": s.anchors, "kv_bytes": s.kvBytes, "bytes_per_token": s.tokens > 0 ? Double(s.kvBytes) / Double(s.tokens) : 0,
            "full_fp16_kv_bytes": fullKV, "logical_bytes": s.logicalBytes,
        ]
        if json { print(jsonString(obj)); return }
        print("store      \(store.path)")
        print("model      \(store.manifest.modelName) (\(store.manifest.modelFingerprint))")
        print("adapters   \(store.manifest.adapters.sorted { $0.key < $1.key }.map { "r=\($0.key): \($0.value)" }.joined(separator: ", "))")
        print("documents  \(s.documents), windows \(s.windows), tokens \(s.tokens), anchors \(s.anchors)")
        print(String(format: "KV bytes   %d (%.1f bytes/token; the full fp16 KV would be %d, %.1fx more)", s.kvBytes,
                     s.tokens > 0 ? Double(s.kvBytes) / Double(s.tokens) : 0, fullKV, s.kvBytes > 0 ? Double(fullKV) / Double(s.kvBytes) : 0))
    }
}

struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "docs", abstract: "List, show or delete stored documents.",
                                                    subcommands: [List.self, Show.self, Delete.self])

    static func store(_ m: ModelOptions, _ s: StoreOptions) throws -> KVStore {
        let cfg = try m.appConfig()
        let model = try m.load()
        do { return try KnowledgeBase.openStore(path: s.path(cfg), model: model, create: false) } catch { throw CLIError("\(error)") }
    }

    static func describe(_ d: DocumentRecord) -> [String: Any] {
        ["id": d.id, "title": d.title, "source": d.source, "ratio": d.ratio, "adapter": d.adapter ?? "none", "windows": d.windows,
         "tokens": d.tokens, "anchors": d.anchors, "kv_bytes": d.kvBytes, "content_sha256": d.contentHash, "ingested_at": d.ingestedAt]
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List documents.")
        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var storeOptions: StoreOptions
        @Flag(name: .long, help: "Print a JSON array.") var json = false
        func run() throws {
            let docs = try DocsCommand.store(modelOptions, storeOptions).documents()
            if json { print(jsonString(docs.map(DocsCommand.describe))); return }
            for d in docs { print("\(d.id)\tr=\(d.ratio)\t\(d.windows) windows\t\(d.tokens) tokens\t\(d.kvBytes) bytes\t\(d.title)") }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one document's record and windows.")
        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "Document id.") var id: String
        @Flag(name: .long, help: "Print one JSON object.") var json = false
        func run() throws {
            let store = try DocsCommand.store(modelOptions, storeOptions)
            guard let d = try store.document(id) else { throw CLIError("no document '\(id)' in the store") }
            var obj = DocsCommand.describe(d)
            obj["window_texts"] = try (0..<d.windows).map { try store.window(d, $0).text }
            if json { print(jsonString(obj)); return }
            for k in ["id", "title", "source", "ratio", "adapter", "windows", "tokens", "anchors", "kv_bytes", "content_sha256", "ingested_at"] {
                print("\(k.padding(toLength: 15, withPad: " ", startingAt: 0))\(obj[k]!)")
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete documents (every key under them, atomically per document).")
        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "Document ids.") var ids: [String]
        func run() throws {
            let store = try DocsCommand.store(modelOptions, storeOptions)
            var missing = false
            for id in ids {
                if try store.delete(id) { print("deleted\t\(id)") } else { StandardError.write("no document '\(id)'\n"); missing = true }
            }
            if missing { throw ExitCode(1) }
        }
    }
}
