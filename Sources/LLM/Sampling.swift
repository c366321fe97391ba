/// SplitMix64: tiny, seedable, identical on every platform (reproducible --seed).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// Nucleus mass in (0, 1]; 1 keeps the whole distribution.
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()
}

/// Picks the next token from logits: greedy, or temperature + top-p with a seeded generator.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// Index of the largest logit (the first one on ties).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            bestValue = logits[i]
            best = i
        }
        return Int32(best)
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if parameters.temperature <= 0 { return Sampler.argmax(logits) }
        let invT = 1 / parameters.temperature
        let maxLogit = logits.max() ?? 0
        var probs = [(id: Int32, p: Float)]()
        probs.reserveCapacity(logits.count)
        var total: Float = 0
        for i in 0..<logits.count {
            let p = ((logits[i] - maxLogit) * invT).exp
            probs.append((Int32(i), p))
            total += p
        }
        probs.sort { $0.p > $1.p }
        // Nucleus: the smallest prefix whose mass reaches topP.
        var keep = probs.count
        if parameters.topP < 1 {
            var mass: Float = 0
            for (i, e) in probs.enumerated() {
                mass += e.p / total
                if mass >= parameters.topP { keep = i + 1; break }
            }
        }
        let kept = probs[0..<keep]
        let keptTotal = kept.reduce(Float(0)) { $0 + $1.p }
        let u = Float(Double(rng.next() >> 11) / Double(1 << 53)) * keptTotal
        var acc: Float = 0
        for e in kept {
            acc += e.p
            if u < acc { return e.id }
        }
        return kept.last!.id
    }
}

extension Float {
    fileprivate var exp: Float { Float(Foundation.exp(Double(self))) }
}

import Foundation
