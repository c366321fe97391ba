import Digest
import Foundation
import KVStore
import LLM
import SAC
import Synchronization

public enum IngestStatus: String, Sendable {
    /// `repaired`: the text was unchanged but the stored copy was damaged, so it was encoded again.
    case added, replaced, unchanged, repaired
}

public struct IngestOutcome: Sendable {
    public var id: String
    public var status: IngestStatus
    public var record: DocumentRecord
    public var seconds: Double
    /// For `repaired`: what was wrong with the stored copy.
    public var damage: String? = nil
}

public struct Citation: Sendable {
    public var document: String
    public var title: String
    public var window: Int
    public var score: Double?
    public var snippet: String
}

public struct QueryResult: Sendable {
    public var answer: String
    public var answerTokens: [Int32]
    public var citations: [Citation]
    public var retrieveSeconds: Double
    public var loadSeconds: Double
    public var firstTokenSeconds: Double
    public var decodeSeconds: Double
    public var totalSeconds: Double
    public var contextTokens: Int
    public var anchors: Int
    /// The ratio of the KV answered from (a store can hold several after compaction).
    public var ratio: Int
    /// The answer ended at a stop token (not at the token limit or a stop from onToken).
    public var stoppedByToken: Bool
    /// Tokens of the decoder's first block ([LM] and the question segment).
    public var questionTokens: Int
}

/// Bounds on one document's ingest (config/anchorkv.json "ingest"), the same for the CLI and the
/// HTTP ingest lane: memory and encode time grow with a document's tokens.
public struct IngestLimits: Sendable, Equatable {
    /// `ingest.max_document_tokens`: encoder tokens (BOS + header + text) one document may have.
    public var maxDocumentTokens: Int
    /// `ingest.max_document_seconds`: wall time one document's encode may take; no window is
    /// started after it (so it is overrun by at most one window's encode), and nothing is stored.
    public var maxDocumentSeconds: Double
    public static let defaultMaxDocumentTokens = 65536
    public static let defaultMaxDocumentSeconds = 600.0
    public init(maxDocumentTokens: Int = Self.defaultMaxDocumentTokens, maxDocumentSeconds: Double = Self.defaultMaxDocumentSeconds) {
        self.maxDocumentTokens = maxDocumentTokens
        self.maxDocumentSeconds = maxDocumentSeconds
    }
}

/// Ingest and query over a KVStore: documents are compressed once into SAC anchor KVs; a
/// question is answered from the stored KVs of the windows BM25 retrieves (or of named
/// documents), laid out one after another, without re-reading any text.
public final class KnowledgeBase: Sendable {
    public let store: any DocumentStore
    public let model: LlamaModel
    public let ratio: Int
    public let adapter: SACAdapter?
    /// The window layout of the encoder (and of every context laid out for the decoder).
    public let layout: SACLayout
    /// The encoder reuses one inference session, so ingests take turns on it.
    private let encoder: Mutex<SACEncoder>
    /// Decoders by adapter fingerprint ("none" for training-free anchors): a store can hold
    /// documents at several ratios (after compaction), each answered with its own adapter's [LM].
    /// Each answer makes its own session, so decoders are shared by concurrent queries.
    private let decoders = Mutex<[String: SACDecoder]>([:])
    private let retriever = BM25Retriever()
    /// Encoder input tokens before the document text: BOS + header (not indexed).
    private let headerTokens: Int
    private let ingestLimits: Mutex<IngestLimits>
    /// Per-document bounds of `ingest` (the config file's "ingest" object).
    public var limits: IngestLimits {
        get { ingestLimits.withLock { $0 } }
        set { ingestLimits.withLock { $0 = newValue } }
    }

    /// A knowledge base over an open store (made for `model`), encoding new documents at
    /// `ratio` with `adapter` (nil: training-free anchors).
    public init(store: any DocumentStore, model: LlamaModel, adapter: SACAdapter?, ratio: Int, limits: IngestLimits = IngestLimits()) throws {
        guard store.manifest.modelFingerprint == (try model.fingerprint()) else {
            throw StoreError.modelMismatch(path: store.location, store: store.manifest.modelFingerprint, model: try model.fingerprint())
        }
        self.store = store
        self.model = model
        self.adapter = adapter
        let e = try SACEncoder(model: model, mode: adapter.map { .adapter($0) } ?? .plain, ratio: ratio)
        self.ratio = e.ratio
        layout = e.layout
        headerTokens = e.contextTokens("").count
        encoder = Mutex(e)
        ingestLimits = Mutex(limits)
        try addDecoder(for: adapter)
    }

    /// Opens (or creates) the store at `path` for `model`.
    public static func openStore(path: String, model: LlamaModel, create: Bool, dtype: TensorDType = .f16) throws -> KVStore {
        try KVStore(path: path, modelFingerprint: try model.fingerprint(), modelName: model.name, create: create, dtype: dtype,
                    shape: ModelShape(layers: model.config.layerCount, kvDim: model.config.kvDim))
    }

    // MARK: ingest

    /// Compresses and stores one document; unchanged text at the same ratio is a no-op when the
    /// stored copy is whole (`KVStore.damage`: every record's checksum and shape, the windows and
    /// the postings) and is encoded again when it is damaged (`repaired`); changed text replaces
    /// the old version atomically. The ratio's adapter is registered in the document's batch.
    public func ingest(_ doc: SourceDocument) throws -> IngestOutcome {
        let t0 = DispatchTime.now().uptimeNanoseconds
        guard !doc.id.isEmpty, doc.id.utf8.count <= 512 else { throw StoreError.invalidInput("document ids must be 1 to 512 bytes") }
        let hash = SHA256.hex(Data(doc.text.utf8))
        var old: DocumentRecord?
        var damage: String?
        switch try store.stored(doc.id) {
        case .absent: break
        case .whole(let d): old = d
        case .unreadable: damage = "its document record is not valid JSON"  // replaced whatever its text was
        }
        if let old, old.contentHash == hash, old.ratio == ratio, old.adapter == adapter?.fingerprint {
            damage = try store.damage(of: old)
            if damage == nil { return IngestOutcome(id: doc.id, status: .unchanged, record: old, seconds: 0) }
        }
        try store.checkAdapter(ratio: ratio, fingerprint: adapter?.fingerprint)
        let tokens = layout.contextTokens(doc.text, model: model)
        let limits = self.limits
        guard tokens.count <= limits.maxDocumentTokens else {
            throw StoreError.invalidInput("document '\(doc.id)' has \(tokens.count) tokens, more than ingest.max_document_tokens (\(limits.maxDocumentTokens)) in config/anchorkv.json allows; split it into smaller documents or raise the setting. Nothing of it was stored")
        }
        var ctx: CompressedContext!
        do {
            let deadline = ContinuousClock.now + .milliseconds(Int64((limits.maxDocumentSeconds * 1000).rounded()))
            ctx = try encoder.withLock { try $0.compress(tokens: tokens, deadline: deadline) }
        } catch SACError.deadlinePassed(let done, let n) {
            throw StoreError.invalidInput("encoding document '\(doc.id)' (\(tokens.count) tokens) ran past ingest.max_document_seconds (\(limits.maxDocumentSeconds) s) in config/anchorkv.json after \(done) of \(n) windows; split it into smaller documents or raise the setting. Nothing of it was stored")
        }
        let windows = layout.windows.windows(count: tokens.count)
        var windowRecords: [WindowRecord] = []
        for (w, range) in windows.enumerated() {
            let textStart = w == 0 ? min(headerTokens, range.count) : 0
            let text = model.tokenizer.decode(Array(tokens[(range.lowerBound + textStart)..<range.upperBound]), skipSpecial: true)
            windowRecords.append(WindowRecord(tokens: Array(tokens[range]), text: text, start: range.lowerBound, terms: LexicalAnalyzer.terms(text)))
        }
        let record = DocumentRecord(id: doc.id, title: doc.title, source: doc.origin, contentHash: hash, ratio: ratio,
                                    adapter: adapter?.fingerprint, windows: windows.count, tokens: tokens.count,
                                    anchors: ctx.anchorCount, ingestedAt: KVStore.timestamp())
        // Each record is encoded as soon as it is cut out, so the fp32 copy of the document's KV
        // exists once (in ctx), not twice; ctx goes as soon as the bytes are made.
        var encoded: [[[UInt8]]] = []
        Self.forEachWindowRecord(of: ctx) { w, record in
            if w == encoded.count { encoded.append([]) }
            encoded[w].append(store.encode(record))
        }
        ctx = nil
        let stored = try store.putEncoded([EncodedDocument(record: record, windows: windowRecords, kv: encoded)],
                                          adapters: [String(ratio): adapter?.fingerprint ?? "none"])[0]
        return IngestOutcome(id: doc.id, status: damage != nil ? .repaired : old == nil ? .added : .replaced, record: stored,
                             seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, damage: damage)
    }

    /// The context's anchors cut back into per-window, per-layer store records.
    static func windowRecords(of ctx: CompressedContext) -> [[TensorRecord]] {
        var kv: [[TensorRecord]] = []
        forEachWindowRecord(of: ctx) { w, record in
            if w == kv.count { kv.append([]) }
            kv[w].append(record)
        }
        return kv
    }

    /// Each window's per-layer store record in order (window-major), one at a time.
    static func forEachWindowRecord(of ctx: CompressedContext, _ body: (Int, TensorRecord) -> Void) {
        var anchorStart = 0
        for (w, n) in ctx.windowAnchorCounts.enumerated() {
            let d = ctx.kvDim, rows = (anchorStart * d)..<((anchorStart + n) * d)
            for l in 0..<ctx.layerCount {
                body(w, TensorRecord(positions: Array(ctx.positions[anchorStart..<(anchorStart + n)]), keys: Array(ctx.keys[l][rows]),
                                     values: Array(ctx.values[l][rows]), cols: d))
            }
            anchorStart += n
        }
    }

    // MARK: query

    /// Makes documents stored with `adapter` (nil: training-free anchors) answerable.
    public func addDecoder(for adapter: SACAdapter?) throws {
        let key = adapter?.fingerprint ?? "none"
        if decoders.withLock({ $0[key] }) != nil { return }
        let d = try SACDecoder(model: model, adapter: adapter)
        decoders.withLock { if $0[key] == nil { $0[key] = d } }
    }

    /// The stored KV of the given windows laid out one after another: window i occupies
    /// positions i*W+1 ... (its anchors keep their offsets inside it), so a whole document in
    /// order gets exactly the positions it was encoded with.
    public func context(of windows: [(DocumentRecord, Int)], snapshot: (any StoreSnapshot)? = nil) throws -> CompressedContext {
        try context(of: windows, snapshot: snapshot, keepTensors: true)
    }

    /// What `context(of:)` gives for a whole document, with every record read and checked as
    /// it does, but without the tensors (keys and values are empty, one per layer): the layout a
    /// streamed download writes first; `documentLayer` then reads the tensors a layer at a time.
    public func layout(of doc: DocumentRecord, snapshot: any StoreSnapshot) throws -> CompressedContext {
        try context(of: (0..<doc.windows).map { (doc, $0) }, snapshot: snapshot, keepTensors: false)
    }

    /// One layer of a whole document's KV, every window in order (as `context(of:)` lays it out),
    /// from `snapshot`; each record is checked against its window's anchors x kv_dim.
    public func documentLayer(_ doc: DocumentRecord, layer: Int, snapshot: any StoreSnapshot) throws -> (keys: [Float], values: [Float]) {
        let c = model.config
        var keys: [Float] = [], values: [Float] = []
        for w in 0..<doc.windows {
            let (_, length) = try window(w, of: doc)
            let shape = TensorCodec.Shape(rows: UniformAnchors.count(windowLength: length, ratio: doc.ratio), cols: c.kvDim)
            let r = try store.loadKV(doc, window: w, layer: layer, expect: shape, snapshot: snapshot)
            keys += r.keys
            values += r.values
        }
        return (keys, values)
    }

    /// Window `w` of a stored document (first token, length), checked against what its record
    /// claims: a damaged record's window count, tokens or ratio is a corrupt-record error.
    func window(_ w: Int, of doc: DocumentRecord) throws -> (start: Int, length: Int) {
        guard w < doc.windows, KVStore.ratios.contains(doc.ratio), let win = layout.windows.window(w, of: doc.tokens) else {
            throw StoreError.corruptRecord(document: doc.id, window: w, layer: nil,
                                           reason: "the document claims \(doc.windows) windows, \(doc.tokens) tokens and ratio \(doc.ratio)")
        }
        return win
    }

    /// Refuses, before any KV is read, windows whose span leaves no room for the answer in the
    /// model's context: a request naming many large documents would otherwise load all their KV
    /// only for the decoder to refuse it. Bounds a query's memory by the model's context.
    func checkSpan(_ windows: [(DocumentRecord, Int)], maxTokens: Int) throws {
        guard let last = windows.last else { return }
        let (_, length) = try window(last.1, of: last.0)
        let span = layout.windows.contextLength(lastSlot: windows.count - 1, length: length)
        let limit = model.config.contextLength
        guard span + maxTokens < limit else {
            throw StoreError.invalidInput("the \(windows.count) windows to answer from span \(span) tokens; with \(maxTokens) answer tokens that passes the model's context of \(limit) tokens. Name fewer documents, ask with a smaller k, or ask for fewer tokens")
        }
    }

    func context(of windows: [(DocumentRecord, Int)], snapshot: (any StoreSnapshot)?, keepTensors: Bool) throws -> CompressedContext {
        guard let first = windows.first else { throw StoreError.invalidInput("no windows to answer from") }
        let c = model.config, windowLayout = layout.windows
        var keys = [[Float]](repeating: [], count: c.layerCount), values = keys
        var positions: [Int32] = [], counts: [Int] = []
        var contextLength = 0
        for (i, (doc, w)) in windows.enumerated() {
            guard doc.ratio == first.0.ratio, doc.adapter == first.0.adapter else {
                throw StoreError.invalidInput("documents '\(first.0.id)' and '\(doc.id)' are stored at different ratios or adapters; query them separately")
            }
            let (start, length) = try window(w, of: doc)
            // Checked before decoding: each record is this window's anchors x the model's kv_dim.
            let shape = TensorCodec.Shape(rows: UniformAnchors.count(windowLength: length, ratio: doc.ratio), cols: c.kvDim)
            let records = try store.loadKV(doc, window: w, layers: c.layerCount, expect: shape, snapshot: snapshot)
            for (l, r) in records.enumerated() where keepTensors {
                keys[l] += r.keys
                values[l] += r.values
            }
            // Stored positions are 1-based and global, ascending inside the window.
            let local = records[0].positions.map { Int($0) - start }
            guard local.first.map({ $0 >= 1 }) ?? false, local.last! <= length, zip(local, local.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw StoreError.corruptRecord(document: doc.id, window: w, layer: 0, reason: "anchor positions are not ascending inside the window's \(length) tokens")
            }
            positions += local.map { windowLayout.position(slot: i, offset: $0) }
            counts.append(records[0].rows)
            contextLength = windowLayout.contextLength(lastSlot: i, length: length)
        }
        return CompressedContext(ratio: first.0.ratio, contextLength: contextLength, positions: positions, windowAnchorCounts: counts,
                                 keys: keys, values: values, kvDim: c.kvDim, modelFingerprint: store.manifest.modelFingerprint,
                                 adapterFingerprint: first.0.adapter, selection: "uniform")
    }

    /// Windows to answer from: the top-k BM25 windows (within `documents` when given), or every
    /// window of the named documents when `k` is nil. Returned in document order. A document
    /// named more than once counts once (so a repeated id cannot multiply the context).
    /// With `snapshot`, every record read comes from that one view.
    public func retrieve(_ question: String, k: Int?, documents: [String]?, snapshot: (any StoreSnapshot)? = nil) throws -> [(DocumentRecord, Int, Double?)] {
        var seen = Set<String>()
        let documents = documents.map { $0.filter { seen.insert($0).inserted } }
        var picked: [(DocumentRecord, Int, Double?)] = []
        if let ids = documents, k == nil {
            for id in ids {
                guard let d = try store.document(id, snapshot: snapshot) else { throw StoreError.invalidInput("no document '\(id)' in the store") }
                picked += (0..<d.windows).map { (d, $0, nil) }
            }
        } else {
            picked = try retriever.topWindows(question, k: k ?? 4, store: store, restrictTo: documents.map(Set.init), snapshot: snapshot)
                .map { ($0.document, $0.window, $0.score) }
            if picked.isEmpty, let ids = documents {  // no term matched inside the named documents
                return try retrieve(question, k: nil, documents: ids, snapshot: snapshot)
            }
        }
        picked.sort { ($0.0.number, $0.1) < ($1.0.number, $1.1) }
        return picked
    }

    public func query(_ question: String, k: Int? = 4, documents: [String]? = nil, maxTokens: Int = 64,
                      sampling: SamplingParameters = .greedy, onToken: (Int32) -> Bool = { _ in true }) throws -> QueryResult {
        let q = try prepareQuery(question, k: k, documents: documents, maxTokens: maxTokens, sampling: sampling)
        try q.start().decodeAlone { t in
            q.noteToken()
            return onToken(t)
        }
        return try finish(q)
    }

    /// A query made ready to decode: its windows retrieved and their KV read from one snapshot.
    /// `start` then loads the KV into a session and runs the first block (the model's work,
    /// done by whichever thread decodes: a batched server does all model work on one thread);
    /// decode the sequence alone (`DecodeSequence.decodeAlone`) or with others
    /// (`SACDecoder.advance`), then `finish` the query. Used by one thread at a time.
    public final class PreparedQuery: @unchecked Sendable {
        let question: String, maxTokens: Int, sampling: SamplingParameters
        let decoder: SACDecoder
        /// Dropped once `start` has loaded it into the session.
        private var context: CompressedContext?
        public private(set) var sequence: DecodeSequence?
        let picked: [(DocumentRecord, Int, Double?)]
        let snapshot: any StoreSnapshot
        let model: LlamaModel
        let contextTokens: Int, anchors: Int, ratio: Int
        let started: UInt64, retrieveSeconds: Double
        private(set) var loadSeconds: Double, prefillSeconds = 0.0
        private(set) var decodeFrom: UInt64 = 0
        private(set) var firstTokenAt: UInt64?

        init(question: String, maxTokens: Int, sampling: SamplingParameters, decoder: SACDecoder, context: CompressedContext,
             picked: [(DocumentRecord, Int, Double?)], snapshot: any StoreSnapshot, model: LlamaModel,
             started: UInt64, retrieveSeconds: Double, loadSeconds: Double) {
            self.question = question
            self.maxTokens = maxTokens
            self.sampling = sampling
            self.decoder = decoder
            self.context = context
            self.picked = picked
            self.snapshot = snapshot
            self.model = model
            contextTokens = context.contextLength
            anchors = context.anchorCount
            ratio = context.ratio
            self.started = started
            self.retrieveSeconds = retrieveSeconds
            self.loadSeconds = loadSeconds
        }

        /// Loads the context into a session and runs the first block (once): the sequence holds
        /// the logits of the first answer token.
        public func start() throws -> DecodeSequence {
            if let sequence { return sequence }
            guard let ctx = context else { throw StoreError.invalidInput("the query failed to start") }
            context = nil
            let s = try decoder.start(ctx, question: question, maxTokens: maxTokens, sampling: sampling)
            loadSeconds += s.loadSeconds
            prefillSeconds = s.prefillSeconds
            decodeFrom = DispatchTime.now().uptimeNanoseconds
            sequence = s
            return s
        }

        /// `start` for several queries at once: their first blocks in one batched prefill.
        public static func start(_ queries: [PreparedQuery]) throws {
            let waiting = queries.filter { $0.sequence == nil && $0.context != nil }
            if waiting.count < 2 {
                for q in waiting { _ = try q.start() }
                return
            }
            let requests = waiting.map { SACDecoder.StartRequest(decoder: $0.decoder, context: $0.context!, question: $0.question,
                                                                 maxTokens: $0.maxTokens, sampling: $0.sampling) }
            let sequences = try SACDecoder.start(requests)
            let now = DispatchTime.now().uptimeNanoseconds
            for (q, s) in zip(waiting, sequences) {
                q.context = nil
                q.loadSeconds += s.loadSeconds
                q.prefillSeconds = s.prefillSeconds
                q.decodeFrom = now
                q.sequence = s
            }
        }

        /// Marks an answer token as delivered (the first one sets the time to first token).
        public func noteToken() {
            if firstTokenAt == nil { firstTokenAt = DispatchTime.now().uptimeNanoseconds }
        }
    }

    /// Retrieves a query's windows and reads their KV (see `PreparedQuery`).
    public func prepareQuery(_ question: String, k: Int? = 4, documents: [String]? = nil, maxTokens: Int = 64,
                             sampling: SamplingParameters = .greedy) throws -> PreparedQuery {
        let t0 = DispatchTime.now().uptimeNanoseconds
        func since(_ t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9 }
        // One consistent view for everything the query reads (index totals, postings, document
        // records, windows, KV): a compaction, re-ingest or delete that lands meanwhile is either
        // wholly seen or not at all.
        let snap = store.snapshot()
        var picked = try retrieve(question, k: k, documents: documents, snapshot: snap)
        guard !picked.isEmpty else {
            throw StoreError.invalidInput(try store.lexStats(snapshot: snap).windows == 0
                ? "the store is empty; ingest documents first"
                : "no stored window shares a word with the question; rephrase it, or name the documents to answer from (--doc on the command line, \"documents\" over HTTP)")
        }
        let retrieveSeconds = since(t0)
        let t1 = DispatchTime.now().uptimeNanoseconds
        // KV of different ratios/adapters cannot share one decoder: answer from the family of
        // the best-scoring window (mixed families exist only while a compaction is under way).
        if let best = picked.max(by: { ($0.2 ?? 0) < ($1.2 ?? 0) }) {
            picked = picked.filter { $0.0.ratio == best.0.ratio && $0.0.adapter == best.0.adapter }
        }
        try checkSpan(picked.map { ($0.0, $0.1) }, maxTokens: maxTokens)
        let ctx = try context(of: picked.map { ($0.0, $0.1) }, snapshot: snap)
        let decoder = try decoderFor(ctx)
        try decoder.check(ctx, question: question, maxTokens: maxTokens)
        return PreparedQuery(question: question, maxTokens: maxTokens, sampling: sampling, decoder: decoder, context: ctx, picked: picked,
                             snapshot: snap, model: model, started: t0, retrieveSeconds: retrieveSeconds, loadSeconds: since(t1))
    }

    /// The answer of a decoded query, with its citations (read from the query's snapshot).
    public func finish(_ q: PreparedQuery) throws -> QueryResult {
        var citations: [Citation] = []
        for (doc, w, score) in q.picked {
            let text = try store.window(doc, w, snapshot: q.snapshot).text
            let snippet = text.count > 160 ? String(text.prefix(157)) + "..." : text
            citations.append(Citation(document: doc.id, title: doc.title, window: w, score: score, snippet: snippet))
        }
        let now = DispatchTime.now().uptimeNanoseconds
        let total = Double(now - q.started) / 1e9
        let firstToken = Double((q.firstTokenAt ?? now) - q.started) / 1e9
        guard let seq = q.sequence else { throw StoreError.invalidInput("the query was never started") }
        return QueryResult(answer: q.model.tokenizer.decode(seq.tokens, skipSpecial: true), answerTokens: seq.tokens, citations: citations,
                           retrieveSeconds: q.retrieveSeconds, loadSeconds: q.loadSeconds, firstTokenSeconds: firstToken,
                           decodeSeconds: q.prefillSeconds + Double(now - q.decodeFrom) / 1e9, totalSeconds: total,
                           contextTokens: q.contextTokens, anchors: q.anchors, ratio: q.ratio,
                           stoppedByToken: seq.stoppedByToken, questionTokens: seq.questionTokens)
    }

    private func decoderFor(_ ctx: CompressedContext) throws -> SACDecoder {
        if let d = decoders.withLock({ $0[ctx.adapterFingerprint ?? "none"] }) { return d }
        throw StoreError.invalidInput("these documents were stored with adapter \(ctx.adapterFingerprint ?? "none (no adapter)") at ratio \(ctx.ratio); open the store with that adapter/ratio to query them")
    }
}
