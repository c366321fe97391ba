import AnchorKVCore
import ArgumentParser
import Foundation

/// Opens the configured knowledge base for a command.
func openService(_ m: ModelOptions, _ s: StoreOptions, _ sac: SACOptions, create: Bool, dtype: String = "f16",
                 compression: String? = nil) throws -> KnowledgeService {
    let cfg = try m.appConfig(store: s.store)
    return try reporting { try KnowledgeService.open(config: cfg, .init(create: create, dtype: dtype, compression: compression, adapter: sac.choice)) }
}

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Compress documents into the store (text/markdown files, folders, JSONL with id/text/title).",
        discussion: "Each document is one atomic write. Unchanged documents are skipped once their stored copy checks whole (every record's checksum and shape); a damaged one is encoded again (repaired). Changed ones replace the old version. Empty, binary or non-UTF-8 inputs are reported and skipped. One line per document on stdout; progress and the summary on stderr.\n\nExit status: 0 when every document was stored (or already was); 1 when a document failed, a path named on the command line could not be read, or no document was found at all. " + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "Files, folders or .jsonl files.") var paths: [String]
    @Option(name: .long, help: "Element type for a new store: f16 (default), bf16 or int8.") var dtype = "f16"
    @Option(name: .long, help: "LZ4 policy: none (default: measured to save nothing on fp16 KV), auto, lz4, shuffle-lz4.") var compression = "none"
    @Flag(name: .long, help: "Print the report as one JSON object on stdout (no per-document lines).") var json = false

    func run() throws {
        let (docs, skipped) = KnowledgeService.readDocuments(paths: paths)
        for s in skipped { StandardError.write("skipped \(s.origin): \(s.reason)\n") }
        let service = try openService(modelOptions, storeOptions, sac, create: true, dtype: dtype, compression: compression)
        let bar = ProgressBar(total: docs.count)
        var tokens = 0
        var report = service.ingest(docs) { done, item in
            // nil: document `done` is about to be encoded; else it is done.
            guard let item else { bar.update(done: done, label: docs[done].id, rate: (tokens, "tokens")); return }
            if let damage = item.damage { StandardError.write("repaired \(item.id): the stored copy was damaged (\(damage)); encoded again\n") }
            if let e = item.error { StandardError.write("failed \(item.origin): \(e.message)\n") }
            if let d = item.document {
                if item.status != .unchanged { tokens += d.tokens }
                if !json { printNow("\(item.status.rawValue)\t\(item.id)\t\(d.windows) windows\t\(d.tokens) tokens\t\(d.kvBytes) bytes") }
            }
        }
        bar.update(done: docs.count, label: "done", rate: (tokens, "tokens"))
        bar.finish()
        report.skipped = skipped
        report.store = service.storePath
        let s = report.summary
        if json { print(Results.json(report)) }
        StandardError.write(String(format: "ingested %d documents (%d added, %d replaced, %d unchanged, %d repaired, %d skipped, %d failed): %d windows, %d tokens, %d bytes stored (%.1f bytes/token) in %.1f s (%.0f tokens/s) at ratio %d\n",
                                   docs.count, s.added, s.replaced, s.unchanged, s.repaired, skipped.count, s.failed,
                                   s.windows, s.tokens, s.kvBytes, s.bytesPerToken, report.seconds,
                                   report.seconds > 0 ? Double(s.tokens) / report.seconds : 0, report.ratio))
        // A path the user named that could not be read, or nothing to ingest at all, is a failed
        // run: scripts must not take "0 documents" for success.
        let unreadable = skipped.filter { paths.contains($0.origin) }
        if docs.isEmpty { StandardError.write("error: no document found in \(paths.joined(separator: ", "))\n") }
        if s.failed > 0 || !unreadable.isEmpty || docs.isEmpty { throw ExitCode(1) }
    }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Answer a question (or a file of questions) from the store's compressed knowledge.",
        discussion: "BM25 picks the top-k windows (or --doc names documents); their stored anchor KVs are laid out one after another and decoded. The answer is the first line of stdout, then the citations; timings on stderr. --json prints one object with answer, citations and timings.\n\n--questions FILE answers one question per line of FILE ('-' for stdin; blank lines and lines starting with # are skipped) with the model loaded once: per question a \"Q: ...\" line, the answer and its citations, or with --json one JSON object per line (JSON Lines) holding the question and its answer or error. A question that fails is reported and the rest go on; the exit status is then that of the first failure. Up to --batch questions are decoded together (continuous batching: one pass over the weights per step for all of them; answers are the same as one at a time); results are printed in the file's order.\n\n" + exitStatusHelp)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var sac: SACOptions
    @Argument(help: "The question (or use --questions).") var question: String?
    @Option(name: .long, help: "A file of questions, one per line ('-': stdin).") var questions: String?
    @Option(name: .shortAndLong, help: "Windows to retrieve (default 4; with --doc and no -k, every window of those documents).") var k: Int?
    @Option(name: .long, help: "Restrict to these document ids (repeatable).") var doc: [String] = []
    @Option(name: .long, help: "Maximum answer tokens (default: the config's sac.max_answer_tokens).") var maxTokens: Int?
    @Flag(name: .long, help: "Print one JSON object on stdout (with --questions: one per line).") var json = false
    @Option(name: .long, help: "With --questions: questions decoded together (default 8; 1: one at a time).") var batch = 8

    func validate() throws {
        guard (1...256).contains(batch) else { throw ValidationError("--batch must be 1...256") }
        switch (question, questions) {
        case (nil, nil): throw ValidationError("give a question, or --questions FILE")
        case (.some, .some): throw ValidationError("give a question or --questions FILE, not both")
        case (let q?, nil): guard !q.allSatisfy(\.isWhitespace) else { throw ValidationError("the question is empty") }
        case (nil, .some): break
        }
        if let k, k <= 0 { throw ValidationError("-k must be positive") }
        if let maxTokens, maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
    }

    func params(_ q: String) -> KnowledgeService.Question { .init(q, k: k, documents: doc.isEmpty ? nil : doc, maxTokens: maxTokens) }

    func printAnswer(_ r: Answer) {
        print(r.answer.replacingOccurrences(of: "\n", with: " "))
        for c in r.citations {
            print("  [\(c.document) #\(c.window)\(c.score.map { String(format: " %.2f", $0) } ?? "")] \(c.title)")
        }
    }

    func run() throws {
        if let questions { return try runMany(questions) }
        let service = try openService(modelOptions, storeOptions, sac, create: false)
        let r = try reporting { try service.query(params(question!)) }
        if json { print(Results.json(r)); return }
        printAnswer(r)
        let t = r.timings
        StandardError.write(String(format: "%d windows, %d context tokens as %d anchors | retrieve %.4f s, load %.4f s, first token %.3f s, decode %.3f s, total %.3f s\n",
                                   r.citations.count, r.contextTokens, r.anchors, t.retrieveS, t.loadS, t.firstTokenS, t.decodeS, t.totalS))
    }

    /// One line of --questions --json output.
    struct Line: Encodable {
        var question: String
        var result: Answer?
        var error: CoreError?
    }

    func runMany(_ file: String) throws {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file) else {
                StandardError.write("error: cannot read the questions file \(file)\n")
                throw ExitCode(CoreError.notFound("").exitCode)
            }
            text = String(decoding: data, as: UTF8.self)
        }
        let list = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !list.isEmpty else {
            StandardError.write("error: \(file) holds no questions (one per line; # starts a comment)\n")
            throw ExitCode(CoreError.invalidInput("").exitCode)
        }
        let service = try openService(modelOptions, storeOptions, sac, create: false)
        var firstFailure: CoreError?
        let t0 = ContinuousClock.now
        func report(_ i: Int, _ r: Result<Answer, CoreError>) {
            let q = list[i]
            switch r {
            case .success(let a):
                if json { print(Results.json(Line(question: q, result: a))) } else { print("Q: \(q)"); printAnswer(a) }
            case .failure(let e):
                if firstFailure == nil { firstFailure = e }
                if json { print(Results.json(Line(question: q, error: e))) } else { print("Q: \(q)"); print("error: \(e.message)") }
            }
        }
        // Each question is prepared here and decoded by the batcher's thread beside the others in
        // flight (at most `batch`); results are finished and printed in the file's order.
        let batcher = QueryBatcher(service: service)
        let slots = DispatchSemaphore(value: batch)
        let decoded = LockedResults()
        var pending: [Int: KnowledgeService.PreparedQuestion] = [:]
        var printed = 0
        func printReady(wait: Bool) {
            while printed < list.count, let outcome = wait ? decoded.wait(printed) : decoded.take(printed) {
                switch outcome {
                case .failed(let e): report(printed, .failure(CoreError.from(e)))
                case .decoded:
                    let p = pending.removeValue(forKey: printed)!
                    report(printed, Result { () throws(CoreError) in try service.finish(p) })
                }
                printed += 1
            }
        }
        for (i, q) in list.enumerated() {
            slots.wait()
            printReady(wait: false)
            StandardError.write("[\(i + 1)/\(list.count)] \(q)\n")
            do {
                let p = try service.prepare(params(q))
                pending[i] = p
                batcher.submit(p, onToken: { _ in true }) { e in
                    decoded.put(i, e.map { .failed($0) } ?? .decoded)
                    slots.signal()
                }
            } catch {
                decoded.put(i, .failed(error))
                slots.signal()
            }
        }
        printReady(wait: true)
        batcher.shutdown()
        let seconds = (ContinuousClock.now - t0).seconds
        StandardError.write(String(format: "answered %d questions in %.1f s (%.2f s each, the model loaded once)%@\n", list.count, seconds,
                                   seconds / Double(list.count), firstFailure == nil ? "" : "; some failed"))
        if let firstFailure { throw ExitCode(firstFailure.exitCode) }
    }
}

/// How each question of `query --questions` ended on the decode thread, waited for in order.
final class LockedResults: @unchecked Sendable {  // every access holds `condition`
    enum Outcome { case decoded, failed(any Error) }
    private let condition = NSCondition()
    private var outcomes: [Int: Outcome] = [:]

    func put(_ i: Int, _ o: Outcome) {
        condition.lock()
        outcomes[i] = o
        condition.broadcast()
        condition.unlock()
    }

    func take(_ i: Int) -> Outcome? {
        condition.lock()
        defer { condition.unlock() }
        return outcomes.removeValue(forKey: i)
    }

    func wait(_ i: Int) -> Outcome? {
        condition.lock()
        defer { condition.unlock() }
        while outcomes[i] == nil { condition.wait() }
        return outcomes.removeValue(forKey: i)
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show what the store holds.", discussion: exitStatusHelp)
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Flag(name: .long, help: "Print one JSON object.") var json = false

    func run() throws {
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let s = try reporting { try KnowledgeService.stats(config: cfg) }
        if json { print(Results.json(s)); return }
        print("store      \(s.store)")
        print("model      \(s.model) (\(s.modelFingerprint))")
        print("adapters   \(s.adapters.sorted { $0.key < $1.key }.map { "r=\($0.key): \($0.value)" }.joined(separator: ", "))")
        print("documents  \(s.documents), windows \(s.windows), tokens \(s.tokens), anchors \(s.anchors)")
        print(String(format: "KV bytes   %d (%.1f bytes/token; the full fp16 KV would be %d, %.1fx more)", s.kvBytes, s.bytesPerToken,
                     s.fullFp16KvBytes, s.kvBytes > 0 ? Double(s.fullFp16KvBytes) / Double(s.kvBytes) : 0))
        print("on disk    \(s.diskBytes) bytes")
    }
}

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Remove what interrupted writes left in a cluster store, and recount its counters.",
        discussion: "On a Redis Cluster store a crash between the parts of a write can leave keys of a version that never became visible, postings and a catalogue entry of it, and counters off by a document; readers never see them, they only take memory. A sweep removes them while writers go on: a version's keys only when untouched for --older-than (a write may still be on its way to its commit). A folder store writes each document in one atomic batch: nothing to sweep.\n\n" + exitStatusHelp)
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .long, help: "Grace: keep versions touched more recently than this (e.g. 1h, 90m, 45s).") var olderThan = "1h"
    @Flag(name: .long, help: "Report what would be removed; change nothing.") var dryRun = false
    @Flag(name: .long, help: "Print one JSON object.") var json = false

    func validate() throws {
        do { _ = try KnowledgeService.parseDuration(olderThan) } catch { throw ValidationError("--older-than: \(error.message)") }
    }

    func run() throws {
        let grace = try reporting { try KnowledgeService.parseDuration(olderThan) }
        let cfg = try modelOptions.appConfig(store: storeOptions.store)
        let r = try reporting { try KnowledgeService.sweep(config: cfg, olderThan: grace, dryRun: dryRun) }
        if json { print(Results.json(r)); return }
        let verb = dryRun ? "would remove" : "removed"
        print("\(verb) \(r.versionsRemoved) unnamed versions (\(r.keysRemoved) keys), \(r.postingsRemoved) postings, \(r.catalogueEntriesRemoved) catalogue entries; kept \(r.versionsKept) unnamed versions younger than \(olderThan)")
        let (b, a) = (r.countersBefore, r.countersAfter)
        if r.countersFixed {
            print("counters \(dryRun ? "would be" : "were") fixed: documents \(b.documents) -> \(a.documents), windows \(b.windows) -> \(a.windows), tokens \(b.tokens) -> \(a.tokens), KV bytes \(b.kvBytes) -> \(a.kvBytes)")
        } else {
            print("counters agree with the \(a.documents) visible documents")
        }
    }
}

struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "docs", abstract: "List, show or delete stored documents.",
                                                    discussion: exitStatusHelp, subcommands: [List.self, Show.self, Delete.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List documents.")
        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var storeOptions: StoreOptions
        @Flag(name: .long, help: "Print a JSON array.") var json = false
        func run() throws {
            let cfg = try modelOptions.appConfig(store: storeOptions.store)
            let docs = try reporting { try KnowledgeService.documents(config: cfg) }.documents
            if json { print(Results.json(docs)); return }
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
            let cfg = try modelOptions.appConfig(store: storeOptions.store)
            let d = try reporting { try KnowledgeService.document(config: cfg, id, windows: true) }
            if json { print(Results.json(d)); return }
            let rows: [(String, Any)] = [("id", d.id), ("title", d.title), ("source", d.source), ("ratio", d.ratio), ("adapter", d.adapter),
                                         ("windows", d.windows), ("tokens", d.tokens), ("anchors", d.anchors), ("kv_bytes", d.kvBytes),
                                         ("content_sha256", d.contentSha256), ("ingested_at", d.ingestedAt)]
            for (k, v) in rows { print("\(k.padding(toLength: 15, withPad: " ", startingAt: 0))\(v)") }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete documents (every key under them, atomically per document).")
        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "Document ids.") var ids: [String]
        func run() throws {
            let cfg = try modelOptions.appConfig(store: storeOptions.store)
            var status: Int32 = 0
            for id in ids {
                do { try KnowledgeService.delete(config: cfg, id); print("deleted\t\(id)") } catch {
                    StandardError.write("error: \(error.message)\n")
                    status = max(status, error.exitCode)
                }
            }
            if status != 0 { throw ExitCode(status) }
        }
    }
}
