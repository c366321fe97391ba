import Foundation

/// Answer-quality metrics, named as the papers name them.
public enum Metrics {
    /// SQuAD normalization: lower case, punctuation removed, articles (a, an, the) removed,
    /// whitespace collapsed.
    public static func normalize(_ s: String) -> String {
        let lowered = s.lowercased()
        let noPunct = String(lowered.unicodeScalars.map { CharacterSet.punctuationCharacters.contains($0) || CharacterSet.symbols.contains($0) ? " " : Character($0) })
        return noPunct.split(whereSeparator: \.isWhitespace).filter { !["a", "an", "the"].contains($0) }.joined(separator: " ")
    }

    /// SQuAD exact match: normalized strings equal, max over the gold answers.
    public static func exactMatch(_ prediction: String, _ golds: [String]) -> Double {
        let p = normalize(prediction)
        return golds.contains { normalize($0) == p } ? 1 : 0
    }

    /// SQuAD token F1 (bag of normalized tokens), max over the gold answers.
    public static func tokenF1(_ prediction: String, _ golds: [String]) -> Double {
        golds.map { f1(normalize(prediction).split(separator: " ").map(String.init), normalize($0).split(separator: " ").map(String.init)) }.max() ?? 0
    }

    static func f1(_ p: [String], _ g: [String]) -> Double {
        if p.isEmpty || g.isEmpty { return p.isEmpty && g.isEmpty ? 1 : 0 }
        var counts: [String: Int] = [:]
        for t in g { counts[t, default: 0] += 1 }
        var common = 0
        for t in p where (counts[t] ?? 0) > 0 { common += 1; counts[t]! -= 1 }
        if common == 0 { return 0 }
        let precision = Double(common) / Double(p.count), recall = Double(common) / Double(g.count)
        return 2 * precision * recall / (precision + recall)
    }

    /// The SAC paper's "F1": ROUGE-1 F over SETS of unigrams, case-sensitive, the text split on
    /// whitespace and '.', against the FIRST gold answer only.
    public static func rouge1F(_ prediction: String, firstGold: String) -> Double {
        func unigrams(_ s: String) -> Set<String> {
            Set(s.split(whereSeparator: { $0.isWhitespace || $0 == "." }).map(String.init))
        }
        let p = unigrams(prediction), g = unigrams(firstGold)
        if p.isEmpty || g.isEmpty { return 0 }
        let overlap = Double(p.intersection(g).count)
        if overlap == 0 { return 0 }
        let precision = overlap / Double(p.count), recall = overlap / Double(g.count)
        return 2 * precision * recall / (precision + recall)
    }

    /// The SAC paper's EM: raw string equality with the first gold answer (whitespace-trimmed).
    public static func rawExactMatch(_ prediction: String, firstGold: String) -> Double {
        prediction.trimmingCharacters(in: .whitespacesAndNewlines) == firstGold.trimmingCharacters(in: .whitespacesAndNewlines) ? 1 : 0
    }
}

/// Scores of one prediction.
public struct Score: Codable, Sendable {
    public var em: Double
    public var f1: Double
    public var rouge1: Double
    public var rawEM: Double

    public init(prediction: String, answers: [String]) {
        em = Metrics.exactMatch(prediction, answers)
        f1 = Metrics.tokenF1(prediction, answers)
        rouge1 = Metrics.rouge1F(prediction, firstGold: answers.first ?? "")
        rawEM = Metrics.rawExactMatch(prediction, firstGold: answers.first ?? "")
    }
    init(em: Double, f1: Double, rouge1: Double, rawEM: Double) { self.em = em; self.f1 = f1; self.rouge1 = rouge1; self.rawEM = rawEM }

    /// Mean of scores (percentages are the caller's choice).
    public static func mean(_ s: [Score]) -> Score {
        let n = Double(max(1, s.count))
        return Score(em: s.map(\.em).reduce(0, +) / n, f1: s.map(\.f1).reduce(0, +) / n,
                     rouge1: s.map(\.rouge1).reduce(0, +) / n, rawEM: s.map(\.rawEM).reduce(0, +) / n)
    }
}
