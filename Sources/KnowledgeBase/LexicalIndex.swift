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
    public func topWindows(_ question: String, k: Int, store: KVStore, restrictTo docs: Set<String>? = nil,
                           snapshot: RocksDB.Snapshot? = nil) throws -> [ScoredWindow] {
        let stats = try store.lexStats(snapshot: snapshot)
        guard stats.windows > 0 else { return [] }
        let byNumber = try store.documentsByNumber(snapshot: snapshot)
        let avg = Double(stats.totalLength) / Double(stats.windows)
        var scores: [String: (UInt64, Int, Double)] = [:]
        for term in LexicalAnalyzer.terms(question).keys {
            let postings = try store.postings(term, snapshot: snapshot)
            guard !postings.isEmpty else { continue }
            let n = Double(postings.count)
            let idf = log(1 + (Double(stats.windows) - n + 0.5) / (n + 0.5))
            for p in postings {
                let tf = Double(p.termFrequency)
                let s = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * Double(p.windowLength) / max(avg, 1)))
                let key = "\(p.document)/\(p.window)"
                scores[key, default: (p.document, p.window, 0)].2 += s
            }
        }
        var out: [ScoredWindow] = []
        for (_, (num, w, s)) in scores {
            guard let doc = byNumber[num] else { continue }
            if let docs, !docs.contains(doc.id) { continue }
            out.append(ScoredWindow(document: doc, window: w, score: s))
        }
        out.sort { $0.score != $1.score ? $0.score > $1.score : ($0.document.id, $0.window) < ($1.document.id, $1.window) }
        return Array(out.prefix(k))
    }
}
