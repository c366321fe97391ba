import ClusterStore
import Digest
import Foundation
import KVStore
import KnowledgeBase
import LLM
import SAC

/// The application: one knowledge base (a store, the model, its adapters) and every use case
/// users have of it. The CLI and the HTTP service are thin faces of this type; they never see
/// the engine (model, SAC, store) underneath.
///
/// Concurrency: the model is immutable and shared; every query decodes with its own inference
/// session, so queries run in parallel. The encoder reuses one session behind a lock, so
/// ingests and compactions take turns. RocksDB is thread-safe; every multi-record change is one
/// atomic batch and KVStore serialises its writers.
public final class KnowledgeService: Sendable {
    public let config: AppConfig
    let model: LlamaModel
    let kb: KnowledgeBase
    let catalog: AdapterCatalog

    /// How to open the store.
    public struct OpenOptions: Sendable {
        /// Create the store when it does not exist.
        public var create = false
        /// Element type of a new store: f16, bf16 or int8.
        public var dtype = "f16"
        /// LZ4 policy for records written by this process: none, auto, lz4 or shuffle-lz4 (nil: none).
        public var compression: String?
        /// The encoder for new documents (the store's own adapter for the ratio wins when it has one).
        public var adapter = AdapterChoice()
        public init(create: Bool = false, dtype: String = "f16", compression: String? = nil, adapter: AdapterChoice = AdapterChoice()) {
            self.create = create; self.dtype = dtype; self.compression = compression; self.adapter = adapter
        }
    }

    /// Loads the configured model (threads as configured).
    public static func loadModel(_ config: AppConfig) throws(CoreError) -> LlamaModel {
        if let t = config.threads { setenv("ANCHORKV_THREADS", String(t), 1) }
        let path = config.modelPath
        do { return try LlamaModel.load(path: path) } catch {
            let e = CoreError.from(error)
            throw CoreError(e.kind == .notFound ? .notFound : .invalidInput,
                            "cannot load model \(path): \(e.message)\(FileManager.default.fileExists(atPath: path) ? "" : " (run tools/setup.sh to install the default model, or name one with --model / ANCHORKV_MODEL / the config's \"model\")")")
        }
    }

    /// Opens the configured store with the configured model. The ratio is the choice's, else the
    /// config's when the store holds it (or is new), else the store's own; its adapter is the one
    /// the store already uses for that ratio, else the choice's. Every other ratio the store holds
    /// stays answerable when its adapter is the config's.
    /// `model`: an already loaded model to share (tests, several stores in one process).
    public static func open(config: AppConfig, _ options: OpenOptions = OpenOptions(), model: LlamaModel? = nil) throws(CoreError) -> KnowledgeService {
        let location = try StoreLocation.parse(config.storePath)  // before the model: a wrong store fails at once
        let model = if let model { model } else { try loadModel(config) }
        let catalog = AdapterCatalog(model: model, config: config)
        guard let dtype = TensorDType(name: options.dtype) else { throw .invalidInput("the dtype must be f16, bf16 or int8, not '\(options.dtype)'") }
        var policy = CompressionPolicy.none
        if let c = options.compression {
            guard let p = CompressionPolicy(rawValue: c) else { throw .invalidInput("the compression must be none, auto, lz4 or shuffle-lz4, not '\(c)'") }
            policy = p
        }
        return try CoreError.mapping {
            let store = try location.open(config: config, modelFingerprint: try model.fingerprint(), modelName: model.name, create: options.create,
                                          dtype: dtype, shape: ModelShape(layers: model.config.layerCount, kvDim: model.config.kvDim))
            (store as? KVStore)?.compression = policy  // a cluster store keeps records raw
            let choice = options.adapter
            let stored = store.manifest.adapters.keys.compactMap(Int.init).sorted()
            let ratio = choice.ratio ?? (stored.isEmpty || stored.contains(config.sacRatio) ? config.sacRatio : stored[0])
            var adapter: SACAdapter?
            if let recorded = store.manifest.adapters[String(ratio)], choice.adapterPath == nil, !choice.noAdapter {
                adapter = try catalog.decoder(fingerprint: recorded, ratio: ratio)
            } else {
                var c = choice
                c.ratio = ratio
                adapter = try catalog.encoder(c).adapter
            }
            let kb = try KnowledgeBase(store: store, model: model, adapter: adapter, ratio: ratio, limits: config.ingestLimits)
            let service = KnowledgeService(config: config, model: model, kb: kb, catalog: catalog)
            for (r, fp) in store.manifest.adapters where Int(r) != ratio { service.addDecoder(ratio: r, fingerprint: fp) }
            return service
        }
    }

    init(config: AppConfig, model: LlamaModel, kb: KnowledgeBase, catalog: AdapterCatalog) {
        self.config = config
        self.model = model
        self.kb = kb
        self.catalog = catalog
    }

    /// Makes KV of `ratio` made with adapter `fingerprint` answerable when that adapter is at
    /// hand; returns false when it is not.
    @discardableResult
    func addDecoder(ratio: String, fingerprint: String) -> Bool {
        if fingerprint == "none" { return (try? kb.addDecoder(for: nil)) != nil }
        guard let r = Int(ratio), let a = catalog.configured(ratio: r, fingerprint: fingerprint) else { return false }
        return (try? kb.addDecoder(for: a)) != nil
    }

    // MARK: what this knowledge base is

    /// The ratio new documents are encoded at, and the adapter's fingerprint ("none": training-free).
    public var ratio: Int { kb.ratio }
    public var adapterFingerprint: String { kb.adapter?.fingerprint ?? "none" }
    public var storePath: String { kb.store.location }
    public var modelName: String { model.name }
    public var modelFingerprint: String { kb.store.manifest.modelFingerprint }
    /// Tokens per window of the encoder (and of every context laid out for the decoder).
    public var window: Int { kb.layout.window }

    /// The fingerprint of the adapter `choice` names ("none": training-free anchors).
    public func adapterFingerprint(for choice: AdapterChoice) throws(CoreError) -> String {
        try catalog.encoder(choice).adapter?.fingerprint ?? "none"
    }

    /// Refuses now, not at the first ingest, a store that holds this ratio with another adapter.
    public func checkAdapter() throws(CoreError) {
        try CoreError.mapping { try kb.store.checkAdapter(ratio: kb.ratio, fingerprint: kb.adapter?.fingerprint) }
    }

    // MARK: ingest

    /// Reads files, folders and JSONL files into documents (what could not be read is skipped, with why).
    public static func readDocuments(paths: [String]) -> (documents: [IngestDocument], skipped: [SkippedInfo]) {
        let (docs, skipped) = DocumentSource.read(paths: paths)
        return (docs, skipped.map { SkippedInfo(origin: $0.origin, reason: $0.reason) })
    }

    /// Ingests one document: one atomic write (or none when it is unchanged and whole).
    public func ingest(_ doc: IngestDocument) throws(CoreError) -> IngestItem {
        let o = try CoreError.mapping { try kb.ingest(doc) }
        let status: IngestItem.Status = switch o.status {
        case .added: .added
        case .replaced: .replaced
        case .unchanged: .unchanged
        case .repaired: .repaired
        }
        return IngestItem(id: doc.id, origin: doc.origin, status: status, document: DocumentInfo(o.record), seconds: o.seconds, damage: o.damage)
    }

    /// Ingests documents in order, one atomic write each. A failed document is reported and the
    /// rest go on; once `stop` says why, documents not yet started are `notAttempted`.
    /// `progress(i, nil)` is called when document i is about to be encoded (after the stop
    /// check: a stop that comes later lets it finish), `progress(i + 1, item)` when it is done.
    public func ingest(_ docs: [IngestDocument], stop: StopFlag? = nil,
                       progress: (_ done: Int, _ item: IngestItem?) -> Void = { _, _ in }) -> IngestReport {
        let t0 = ContinuousClock.now
        var items: [IngestItem] = []
        for doc in docs {
            if let stop, stop.shouldStop {
                items.append(IngestItem(id: doc.id, origin: doc.origin, status: .notAttempted,
                                        error: CoreError(.unavailable, "\(stop.reason) before this document was started; nothing of it was stored")))
            } else {
                progress(items.count, nil)
                do { items.append(try ingest(doc)) } catch {
                    items.append(IngestItem(id: doc.id, origin: doc.origin, status: .failed, error: CoreError.from(error)))
                }
            }
            progress(items.count, items.last)
        }
        return IngestReport(items: items, ratio: ratio, adapter: adapterFingerprint, seconds: (ContinuousClock.now - t0).seconds)
    }

    // MARK: query

    public struct Question: Sendable {
        public var text: String
        /// Windows to retrieve; nil with `documents`: every window of those documents.
        public var k: Int?
        public var documents: [String]?
        public var maxTokens: Int?
        /// Sampling: 0 (the default) is greedy; with a temperature, nucleus mass and seed.
        public var temperature: Float = 0
        public var topP: Float = 1
        public var seed: UInt64 = 0
        public init(_ text: String, k: Int? = nil, documents: [String]? = nil, maxTokens: Int? = nil,
                    temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
            self.text = text; self.k = k; self.documents = documents; self.maxTokens = maxTokens
            self.temperature = temperature; self.topP = topP; self.seed = seed
        }
    }

    /// Answers a question from the stored KV (BM25 windows, or the named documents' windows),
    /// decoding it alone. `onToken` gets each answer token as it is made and returns false to stop.
    public func query(_ q: Question, onToken: (Int32) -> Bool = { _ in true }) throws(CoreError) -> Answer {
        let p = try prepare(q)
        try CoreError.mapping {
            try p.start().decodeAlone { t in
                p.noteToken()
                return onToken(t)
            }
        }
        return try finish(p)
    }

    /// A question checked, its windows retrieved and their KV read: `start` (on the thread that
    /// decodes) loads the KV and runs the first block; decode alone or in a batch
    /// (`QueryBatcher`), then `finish`.
    public struct PreparedQuestion: @unchecked Sendable {  // used by one thread at a time
        let prepared: KnowledgeBase.PreparedQuery
        func start() throws -> DecodeSequence { try prepared.start() }
        /// Starts several at once (one batched prefill of their first blocks).
        static func start(_ questions: [PreparedQuestion]) throws { try KnowledgeBase.PreparedQuery.start(questions.map(\.prepared)) }
        var sequence: DecodeSequence? { prepared.sequence }
        func noteToken() { prepared.noteToken() }
    }

    /// Checks a question and makes it ready to decode. Reads that meet a document being replaced
    /// or deleted are retried (each writer's batch is atomic, so the retry sees one version whole).
    public func prepare(_ q: Question) throws(CoreError) -> PreparedQuestion {
        guard !q.text.allSatisfy(\.isWhitespace) else { throw .invalidInput("the question is empty") }
        if let k = q.k, k <= 0 { throw .invalidInput("k must be positive") }
        if let ids = q.documents {
            guard !ids.isEmpty else { throw .invalidInput("the document list is empty; leave it out to search every document") }
            let missing = try CoreError.mapping { try ids.filter { try kb.store.document($0) == nil } }
            if !missing.isEmpty { throw .noDocuments(missing) }
        }
        let k = q.documents == nil ? (q.k ?? 4) : q.k
        let maxTokens = q.maxTokens ?? config.answerMaxTokens
        guard maxTokens > 0 else { throw .invalidInput("the answer length must be positive") }
        guard q.temperature >= 0, q.temperature.isFinite else { throw .invalidInput("the temperature must be >= 0") }
        guard q.topP > 0, q.topP <= 1 else { throw .invalidInput("top_p must be in (0, 1]") }
        let sampling = SamplingParameters(temperature: q.temperature, topP: q.topP, seed: q.seed)
        return PreparedQuestion(prepared: try retryingConcurrentChange {
            try kb.prepareQuery(q.text, k: k, documents: q.documents, maxTokens: maxTokens, sampling: sampling)
        })
    }

    /// The answer of a decoded question, with its citations and timings.
    public func finish(_ p: PreparedQuestion) throws(CoreError) -> Answer {
        let r = try CoreError.mapping { try kb.finish(p.prepared) }
        return Answer(answer: r.answer, answerTokens: r.answerTokens.count,
                      citations: r.citations.map { Citation(document: $0.document, title: $0.title, window: $0.window, score: $0.score, snippet: $0.snippet) },
                      timings: QueryTimings(retrieveS: r.retrieveSeconds, loadS: r.loadSeconds, firstTokenS: r.firstTokenSeconds,
                                            decodeS: r.decodeSeconds, totalS: r.totalSeconds),
                      contextTokens: r.contextTokens, anchors: r.anchors, ratio: r.ratio,
                      stoppedByToken: r.stoppedByToken, questionTokens: r.questionTokens)
    }

    /// Runs a read, again (up to `attempts` times) when it met a record its document promised
    /// but a concurrent replace or delete had removed.
    func retryingConcurrentChange<T>(attempts: Int = 3, canRetry: () -> Bool = { true }, _ body: () throws -> T) throws(CoreError) -> T {
        var attempt = 1
        while true {
            do { return try body() } catch StoreError.missingRecord where attempt < attempts && canRetry() {
                attempt += 1
            } catch {
                throw CoreError.from(error)
            }
        }
    }

    // MARK: documents

    /// One page of documents in id order.
    public func documents(limit: Int = 1000, offset: Int = 0) throws(CoreError) -> DocumentPage {
        try Self.documents(in: kb.store, limit: limit, offset: offset)
    }

    public func document(_ id: String, windows: Bool = false) throws(CoreError) -> DocumentInfo {
        try Self.document(id, in: kb.store, windows: windows)
    }

    /// Deletes a document: every key under it, atomically.
    public func delete(_ id: String) throws(CoreError) { try Self.delete(id, in: kb.store) }

    /// The same on the configured store, without loading the model.
    public static func documents(config: AppConfig, limit: Int = Int.max, offset: Int = 0) throws(CoreError) -> DocumentPage {
        try documents(in: openStoreOnly(config), limit: limit, offset: offset)
    }
    public static func document(config: AppConfig, _ id: String, windows: Bool = false) throws(CoreError) -> DocumentInfo {
        try document(id, in: openStoreOnly(config), windows: windows)
    }
    public static func delete(config: AppConfig, _ id: String) throws(CoreError) { try delete(id, in: openStoreOnly(config)) }

    static func documents(in store: any DocumentStore, limit: Int, offset: Int) throws(CoreError) -> DocumentPage {
        guard limit >= 1, offset >= 0 else { throw .invalidInput("limit must be >= 1 and offset >= 0") }
        // One consistent view; the page is a bounded scan and the total a counter (no full read).
        return try CoreError.mapping {
            let snap = store.snapshot()
            let page = try store.documents(limit: limit, offset: offset, snapshot: snap)
            return DocumentPage(documents: page.map { DocumentInfo($0) }, total: try store.lexStats(snapshot: snap).documents, limit: limit, offset: offset)
        }
    }

    static func document(_ id: String, in store: any DocumentStore, windows: Bool) throws(CoreError) -> DocumentInfo {
        try CoreError.mapping {
            guard let d = try store.document(id) else { throw CoreError.noDocument(id) }
            return DocumentInfo(d, windowTexts: windows ? try (0..<d.windows).map { try store.window(d, $0).text } : nil)
        }
    }

    static func delete(_ id: String, in store: any DocumentStore) throws(CoreError) {
        guard try CoreError.mapping({ try store.delete(id) }) else { throw .noDocument(id) }
    }

    // MARK: stats

    /// What the store holds; `logicalBytes` also reads every record to size each column family.
    public func stats(logicalBytes: Bool = false) throws(CoreError) -> StoreStats {
        try Self.stats(of: kb.store, fullKVBytesPerToken: Self.fp16KVBytes(rows: 1, model: model), logicalBytes: logicalBytes)
    }

    static func stats(of store: any DocumentStore, fullKVBytesPerToken: Int?, logicalBytes: Bool) throws(CoreError) -> StoreStats {
        let s = try CoreError.mapping { try store.stats(logicalBytes: logicalBytes) }
        let m = store.manifest
        return StoreStats(store: store.location, model: m.modelName, modelFingerprint: m.modelFingerprint, adapters: m.adapters, dtype: m.dtype,
                          documents: s.documents, windows: s.windows, tokens: s.tokens, anchors: s.anchors, kvBytes: s.kvBytes,
                          bytesPerToken: s.tokens > 0 ? Double(s.kvBytes) / Double(s.tokens) : 0,
                          fullFp16KvBytes: (fullKVBytesPerToken ?? m.shape.map { $0.layers * 2 * $0.kvDim * 2 } ?? 0) * s.tokens,
                          logicalBytes: s.logicalBytes, diskBytes: store.diskBytes(),
                          writesNotReplicated: (store as? RedisDocumentStore)?.degradedWrites.load(ordering: .relaxed) ?? 0,
                          outboxDocuments: (try? (store as? RedisDocumentStore)?.outbox?.lexStats().documents) ?? 0)
    }

    /// Bytes of a KV cache of `rows` tokens at fp16, all layers, keys and values.
    static func fp16KVBytes(rows: Int, model: LlamaModel) -> Int { rows * model.config.layerCount * 2 * model.config.kvDim * 2 }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
