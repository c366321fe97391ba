import Foundation
import LLM
import SAC

/// One reading-comprehension question (a line of the prepared JSONL, tools/data/prepare_qa.py).
public struct QAExample: Codable, Sendable {
    public var id: String
    public var task: String
    public var context: String
    public var question: String
    public var answers: [String]

    /// Reads JSONL; a bad line is an error naming its number.
    public static func load(path: String) throws -> [QAExample] {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvalError("cannot read \(path)") }
        var out: [QAExample] = []
        for (i, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.allSatisfy({ $0 == 32 || $0 == 13 }) {
            do { out.append(try JSONDecoder().decode(QAExample.self, from: Data(line))) } catch {
                throw EvalError("\(path) line \(i + 1) is not a {id, task, context, question, answers} object: \(error)")
            }
        }
        guard !out.isEmpty else { throw EvalError("\(path) holds no examples") }
        return out
    }
}

public struct EvalError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// What answers the questions.
public enum EvalSystem {
    /// SAC: the context compressed once (adapter or training-free anchors), answered by the frozen decoder.
    case sac(encoder: SACEncoder, decoder: SACDecoder)
    /// The whole context in the KV cache, read by the model (+ LoRA: the fine-tuned upper bound).
    case fullContext(lora: LoRAWeights?, layout: SACLayout)
    /// No context at all: the same prompt with an empty context.
    case closedBook(lora: LoRAWeights?, layout: SACLayout)
}

public struct Prediction: Codable, Sendable {
    public var id: String
    public var task: String
    public var question: String
    public var prediction: String
    public var answers: [String]
    public var score: Score
    public var contextTokens: Int
    /// KV rows the answer was decoded from (anchors for SAC, context tokens otherwise).
    public var kvRows: Int
}

/// Runs a system over examples, encoding each distinct context once (questions on the same
/// passage share its compressed or prefilled KV).
public final class Evaluator {
    let model: LlamaModel
    let system: EvalSystem
    let maxTokens: Int

    public init(model: LlamaModel, system: EvalSystem, maxTokens: Int) {
        self.model = model
        self.system = system
        self.maxTokens = maxTokens
    }

    public func run(_ examples: [QAExample], progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> [Prediction] {
        // Group by context, keeping first-appearance order.
        var order: [String] = [], groups: [String: [QAExample]] = [:]
        for e in examples {
            if groups[e.context] == nil { order.append(e.context) }
            groups[e.context, default: []].append(e)
        }
        var out: [Prediction] = []
        for context in order {
            out += try answer(context: context, groups[context]!)
            progress(out.count, examples.count)
        }
        return out
    }

    private func answer(context: String, _ group: [QAExample]) throws -> [Prediction] {
        switch system {
        case .sac(let encoder, let decoder):
            let ctx = try encoder.compress(text: context)
            return try group.map { e in
                let a = try decoder.answer(ctx, question: e.question, maxTokens: maxTokens)
                return prediction(e, a.text, contextTokens: ctx.contextLength, kvRows: ctx.anchorCount)
            }
        case .fullContext(let lora, let layout):
            return try prefilled(layout.contextTokens(context, model: model), group, lora: lora, layout: layout)
        case .closedBook(let lora, let layout):
            return try prefilled(layout.contextTokens("", model: model), group, lora: lora, layout: layout)
        }
    }

    /// Prefills the context once; each question rewinds the cache to it.
    private func prefilled(_ ctx: [Int32], _ group: [QAExample], lora: LoRAWeights?, layout: SACLayout) throws -> [Prediction] {
        let questions = group.map { layout.questionTokens($0.question, model: model) }
        let n = ctx.count
        guard n + (questions.map(\.count).max() ?? 0) + maxTokens < model.config.contextLength else {
            throw EvalError("a context of \(n) tokens does not fit the model's \(model.config.contextLength)")
        }
        let session = model.makeSession(capacity: n + (questions.map(\.count).max() ?? 0) + maxTokens + 1)
        _ = try session.forward(ctx, options: ForwardOptions(positions: (1...n).map { Int32($0) }, lora: lora, computeLogits: false))
        let stop = model.stopTokens.union([layout.eosID])
        return try zip(group, questions).map { e, q in
            session.cache.truncate(to: n)
            var logits = try session.forward(q, options: ForwardOptions(positions: (0..<q.count).map { Int32(n + 1 + $0) }, lora: lora)).logits
            var tokens: [Int32] = []
            var sampler = Sampler(.greedy)
            var position = Int32(n + q.count)
            while tokens.count < maxTokens {
                let next = logits.withUnsafeBufferPointer { sampler.sample($0) }
                if stop.contains(next) { break }
                tokens.append(next)
                position += 1
                logits = try session.forward([next], options: ForwardOptions(positions: [position], lora: lora)).logits
            }
            return prediction(e, model.tokenizer.decode(tokens, skipSpecial: true), contextTokens: n, kvRows: n)
        }
    }

    private func prediction(_ e: QAExample, _ text: String, contextTokens: Int, kvRows: Int) -> Prediction {
        let p = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return Prediction(id: e.id, task: e.task, question: e.question, prediction: p, answers: e.answers,
                          score: Score(prediction: p, answers: e.answers), contextTokens: contextTokens, kvRows: kvRows)
    }

    /// Mean scores per task, plus "all".
    public static func summary(_ predictions: [Prediction]) -> [String: (count: Int, score: Score)] {
        var byTask: [String: [Score]] = ["all": predictions.map(\.score)]
        for p in predictions { byTask[p.task, default: []].append(p.score) }
        return byTask.mapValues { ($0.count, Score.mean($0)) }
    }
}
