import Foundation
import KVStore

/// Terms for the lexical (BM25) index: lower-cased letter/digit runs, without common English
/// stop words. The same function analyses windows at ingest and questions at query time.
public enum LexicalAnalyzer {
    static let stopWords: Set<String> = [
        "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had", "has", "have",
        "he", "her", "his", "how", "i", "in", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their",
        "them", "there", "they", "this", "to", "was", "were", "what", "when", "where", "which", "who", "whom",
        "why", "will", "with", "you", "your",
    ]

    public static func terms(_ text: String) -> [String: Int] {
        var out: [String: Int] = [:]
        var current = ""
        func flush() {
            if !current.isEmpty, !stopWords.contains(current), current.utf8.count <= 64 { out[current, default: 0] += 1 }
            current = ""
        }
        for ch in text.lowercased() {
            if ch.isLetter || ch.isNumber { current.append(ch) } else { flush() }
        }
        flush()
        return out
    }
}

/// A retrieved window with its BM25 score.
public struct ScoredWindow: Sendable {
    public var document: DocumentRecord
    public var window: Int
    public var score: Double
}

/// BM25 (k1 = 1.2, b = 0.75) over the window postings stored in the store's lex family.
public struct BM25Retriever: Sendable {
    public var k1 = 1.2
    public var b = 0.75
    public init() {}

    /// With `snapshot`, the totals, postings and document records all come from that one view.
    /// Only the postings of the question's terms are read, and the records of the windows that
    /// make the top k (ties broken by document id, then window).
    public func topWindows(_ question: String, k: Int, store: any DocumentStore, restrictTo docs: Set<String>? = nil,
                           snapshot: (any StoreSnapshot)? = nil) throws -> [ScoredWindow] {
        let stats = try store.lexStats(snapshot: snapshot)
        guard stats.windows > 0, k > 0 else { return [] }
        // Named documents: their numbers, so postings of other documents are dropped unread.
        var allowed: Set<UInt64>?
        if let docs {
            allowed = Set(try docs.compactMap { try store.document($0, snapshot: snapshot)?.number })
        }
        let avg = Double(stats.totalLength) / Double(stats.windows)
        struct Key: Hashable { var document: UInt64; var window: Int }
        var scores: [Key: Double] = [:]
        for term in LexicalAnalyzer.terms(question).keys {
            let postings = try store.postings(term, snapshot: snapshot)
            guard !postings.isEmpty else { continue }
            let n = Double(postings.count)
            let idf = log(1 + (Double(stats.windows) - n + 0.5) / (n + 0.5))
            for p in postings where allowed?.contains(p.document) ?? true {
                let tf = Double(p.termFrequency)
                let s = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * Double(p.windowLength) / max(avg, 1)))
                scores[Key(document: p.document, window: p.window), default: 0] += s
            }
        }
        // Best first; each group of equal scores resolved to records and ordered by id, until k.
        let ranked = scores.sorted { $0.value > $1.value }
        var records: [UInt64: DocumentRecord?] = [:]
        var out: [ScoredWindow] = []
        var i = 0
        while i < ranked.count, out.count < k {
            var j = i
            while j < ranked.count, ranked[j].value == ranked[i].value { j += 1 }
            var group: [ScoredWindow] = []
            for (key, score) in ranked[i..<j] {
                if records[key.document] == nil { records[key.document] = .some(try store.document(number: key.document, snapshot: snapshot)) }
                // A posting no readable record owns (left by a damaged record) is skipped.
                guard let doc = records[key.document] ?? nil else { continue }
                group.append(ScoredWindow(document: doc, window: key.window, score: score))
            }
            group.sort { ($0.document.id, $0.window) < ($1.document.id, $1.window) }
            out += group.prefix(k - out.count)
            i = j
        }
        return out
    }
}
