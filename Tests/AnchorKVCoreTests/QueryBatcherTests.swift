@testable import AnchorKVCore
import Foundation
import KnowledgeBase
import TestSupport
import XCTest

/// Continuous batching through the application core: questions answered together in one
/// batch give, token for token, the answers they get decoding alone.
final class QueryBatcherTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-batcher-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func config() -> AppConfig {
        var c = AppConfig(root: Self.repository)
        c.storePath = dir.appendingPathComponent("store").path
        for r in [5, 15] { c.sacAdapters[r] = Self.repository.appendingPathComponent("config/adapters/smollm2-135m-sac-r\(r).safetensors").path }
        return c
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent("tools/demo/corpus/\(name)"), encoding: .utf8)
    }

    /// A store holding documents at r=5 and at r=15 (each with its own adapter), questions of
    /// several lengths, answer limits, k, named documents and a sampled one, all in flight at once.
    func testBatchedAnswersAreTheAnswersDecodedAlone() throws {
        let model = try DefaultModel.load()
        let bees = SourceDocument(id: "bees", title: "Honey bees", text: try Self.text("honeybees.md"), origin: "test")
        let river = SourceDocument(id: "river", title: "The Danube", text: try Self.text("danube.md"), origin: "test")
        let press = SourceDocument(id: "press", title: "Printing press",
                                   text: "Johannes Gutenberg built a printing press with movable metal type in Mainz around 1450.", origin: "test")
        do {
            let r5 = try KnowledgeService.open(config: config(), .init(create: true, adapter: AdapterChoice(ratio: 5)), model: model)
            XCTAssertEqual(r5.ingest([bees, press]).items.map(\.status), [.added, .added])
        }
        let service = try KnowledgeService.open(config: config(), .init(adapter: AdapterChoice(ratio: 15)), model: model)
        XCTAssertEqual(service.ingest([river]).items.map(\.status), [.added])
        typealias Q = KnowledgeService.Question
        let questions: [Q] = [
            Q("Who decoded the waggle dance?", maxTokens: 12),
            Q("Where does the Danube rise, and which sea does it flow into after passing through so many countries?", maxTokens: 20),
            Q("Who built a printing press?", documents: ["press"], maxTokens: 8),
            Q("How long is the Danube?", k: 1, maxTokens: 16),
            Q("What do honey bees live in?", documents: ["bees"], maxTokens: 3),
            Q("What did Gutenberg print?", k: 2, maxTokens: 24),
            Q("Tell me about bees.", maxTokens: 10, temperature: 0.8, topP: 0.9, seed: 7),
            Q("Danube countries?", documents: ["river"], maxTokens: 14),
            Q("Mainz?", maxTokens: 1),
        ]
        let alone = try questions.map { try service.query($0) }
        XCTAssertEqual(Set(alone.map(\.ratio)), [5, 15], "the batch mixes ratios and adapters")

        // Prepared first and handed over together, so that every step holds all that are left.
        let batcher = QueryBatcher(service: service)
        let prepared = try questions.map { try service.prepare($0) }
        let streamed = LockedBox<[Int: Int]>([:])
        let group = DispatchGroup()
        for (i, p) in prepared.enumerated() {
            group.enter()
            batcher.submit(p, onToken: { _ in
                streamed.mutate { $0[i, default: 0] += 1 }
                return true
            }, done: { e in
                XCTAssertNil(e, "question \(i)")
                group.leave()
            })
        }
        group.wait()
        let batched = LockedBox<[Int: Answer]>([:])
        for (i, p) in prepared.enumerated() { batched.mutate { $0[i] = try? service.finish(p) } }
        for (i, a) in alone.enumerated() {
            let b = try XCTUnwrap(batched.value[i], "question \(i)")
            XCTAssertEqual(b.answer, a.answer, "question \(i): \(questions[i].text)")
            XCTAssertEqual(b.answerTokens, a.answerTokens)
            XCTAssertEqual(b.stoppedByToken, a.stoppedByToken)
            XCTAssertEqual(b.citations.map(\.document), a.citations.map(\.document))
            XCTAssertEqual(streamed.value[i], a.answerTokens, "each token went to onToken once")
        }
        let stats = batcher.stepStats
        // The decode thread may start on the first before the others arrive, and joiners wait
        // up to joinWaitSteps (2) steps to share a prefill: three steps more at most.
        XCTAssertLessThanOrEqual(stats.steps, alone.map(\.answerTokens).max()! + 3, "one step per token of the longest answer (\(stats))")
        XCTAssertGreaterThanOrEqual(stats.largestBatch, questions.count - 1, "the questions shared steps (\(stats))")

        // Asked from threads of their own, each preparing as it comes: the same answers.
        let asked = LockedBox<[Int: Answer]>([:])
        inThreads(questions.count) { i in
            do {
                let a = try batcher.query(questions[i])
                asked.mutate { $0[i] = a }
            } catch {
                XCTFail("question \(i): \(error)")
            }
        }
        XCTAssertEqual((0..<questions.count).map { asked.value[$0]?.answer }, alone.map(\.answer))
    }

    /// A question whose consumer stops (a client gone) leaves the batch at that step; the others
    /// go on to their own ends.
    func testAStoppedQuestionLeavesTheBatchAndTheOthersFinish() throws {
        let model = try DefaultModel.load()
        var c = config()
        c.sacAdapters = [:]
        let service = try KnowledgeService.open(config: c, .init(create: true, adapter: AdapterChoice(ratio: 15, noAdapter: true)), model: model)
        _ = service.ingest([SourceDocument(id: "river", title: "The Danube", text: try Self.text("danube.md"), origin: "test")])
        let q = KnowledgeService.Question("Where does the Danube rise?", maxTokens: 24)
        let full = try service.query(q)
        let batcher = QueryBatcher(service: service)
        let results = LockedBox<[Int: Answer]>([:])
        inThreads(3) { i in
            let seen = LockedBox(0)
            let a = try? batcher.query(q) { _ in
                seen.value += 1
                return i != 0 || seen.value < 2  // question 0 stops after its second token
            }
            results.mutate { $0[i] = a }
        }
        XCTAssertEqual(results.value[0]?.answerTokens, 2)
        XCTAssertEqual(results.value[1]?.answer, full.answer)
        XCTAssertEqual(results.value[2]?.answer, full.answer)
        // Nothing is left in flight: a new question is answered at once, alone in its steps.
        XCTAssertEqual(try batcher.query(KnowledgeService.Question("Where does the Danube rise?", maxTokens: 3)).answerTokens, 3)
    }
}

/// Runs `body(0..<n)` on n threads of their own at once (concurrentPerform would run only as many
/// as there are cores, and the point is more questions in flight than cores).
func inThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<n {
        group.enter()
        Thread {
            body(i)
            group.leave()
        }.start()
    }
    group.wait()
}
