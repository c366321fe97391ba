/// Errors of the store layer; each names what is wrong and what to do.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    case database(path: String, message: String)
    case notAStore(path: String)
    case modelMismatch(path: String, store: String, model: String)
    case unsupportedFormat(path: String, version: Int)
    case shapeMismatch(path: String, store: ModelShape, model: ModelShape)
    case corruptRecord(document: String, window: Int, layer: Int?, reason: String)
    /// A record the document's own record promises is not there: real damage, or a read that met
    /// a concurrent replace or delete between the two reads (a retry then sees one version whole).
    case missingRecord(document: String, window: Int, layer: Int?, what: String)
    /// The store holds KV at `ratio` made with another adapter than this run's.
    case adapterConflict(ratio: Int, stored: String, requested: String)
    case corrupt(String)
    case invalidInput(String)
    case fileSystem(path: String, reason: String)
    /// Stored, but on fewer replicas than required (a Redis Cluster store): not acknowledged.
    /// `outbox`: the folder where they are kept to be written again.
    case notReplicated(documents: [String], replicas: Int, required: Int, outbox: String?)

    public var description: String {
        switch self {
        case .database(let p, let m):
            return "RocksDB error at \(p): \(m)"
        case .notAStore(let p):
            return "\(p) is not an AnchorKV store (no manifest); pass the store's folder with --store, or ingest to create one"
        case .modelMismatch(let p, let s, let m):
            return "the store at \(p) was built with base model \(s), but the loaded model is \(m); open it with the model it was built with (--model), or use another --store"
        case .unsupportedFormat(let p, let v):
            return "the store at \(p) has format version \(v), which this build cannot read"
        case .shapeMismatch(let p, let s, let m):
            return "the store at \(p) holds KV of \(s), but the model or data has \(m); use the model the store was built with, or another --store"
        case .missingRecord(let d, let w, let l, let what):
            return StoreError.corruptRecord(document: d, window: w, layer: l, reason: "\(what) is missing").description
        case .adapterConflict(let r, let existing, let fp):
            return "the store holds ratio \(r) KV made with adapter \(existing); this run uses \(fp). Use that adapter, or another store"
        case .corruptRecord(let d, let w, let l, let r):
            return "corrupt record for document '\(d)' window \(w)\(l.map { " layer \($0)" } ?? ""): \(r); repair it by ingesting its source again (anchorkv ingest FILE: a damaged document is re-encoded even when its text is unchanged) or importing a snapshot that holds it (anchorkv import FILE), or delete it (anchorkv docs delete '\(d)')"
        case .corrupt(let why):
            return "corrupt store data: \(why)"
        case .invalidInput(let why):
            return "invalid input: \(why)"
        case .fileSystem(let p, let why):
            return "\(p): \(why)"
        case .notReplicated(let ids, let n, let required, let outbox):
            let what = ids.count == 1 ? "document '\(ids[0])' was" : "\(ids.count) documents were"
            let then = outbox.map { "; kept in the outbox \($0) and written again at the next write or open of this store" }
                ?? ": ingest it again once the cluster's replicas are back (CLUSTER NODES)"
            return "\(what) stored on \(n) replica\(n == 1 ? "" : "s"), fewer than the \(required) required, so not acknowledged (a failover now could lose it)\(then)"
        }
    }
}
