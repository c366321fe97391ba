import LLM
import SAC
import TestSupport
import XCTest
@testable import Evaluation

/// The evaluator on the real default model: questions sharing a passage reuse its KV (the cache
/// is rewound to the context after each question) and must answer exactly as if alone.
final class EvaluatorTests: XCTestCase {
    let passage = "The Danube is the second-longest river in Europe. It is about 2,850 kilometres long and flows into the Black Sea."
    lazy var examples = [
        QAExample(id: "1", task: "t", context: passage, question: "How long is the Danube?", answers: ["about 2,850 kilometres"]),
        QAExample(id: "2", task: "t", context: passage, question: "Where does the Danube flow into?", answers: ["the Black Sea"]),
    ]

    func testSharedContextAnswersEqualAnswersAlone() throws {
        let model = try DefaultModel.load()
        let layout = SACLayout.defaults(for: model)
        for system: EvalSystem in [.fullContext(lora: nil, layout: layout),
                                   .sac(encoder: try SACEncoder(model: model, mode: .plain, ratio: 5), decoder: try SACDecoder(model: model, adapter: nil))] {
            let e = Evaluator(model: model, system: system, maxTokens: 8)
            let together = try e.run(examples)
            let alone = try examples.map { try e.run([$0])[0] }
            XCTAssertEqual(together.map(\.prediction), alone.map(\.prediction))
            XCTAssertEqual(together.count, 2)
            XCTAssertFalse(together[0].prediction.isEmpty)
        }
        let closed = try Evaluator(model: model, system: .closedBook(lora: nil, layout: layout), maxTokens: 4).run(examples)
        XCTAssertEqual(closed[0].contextTokens, layout.contextTokens("", model: model).count)
        let summary = Evaluator.summary(closed)
        XCTAssertEqual(summary["all"]?.count, 2)
        XCTAssertEqual(summary["t"]?.count, 2)
    }

    func testBadDataIsAClearError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-eval-\(UUID().uuidString).jsonl")
        try "{\"id\": \"1\", \"task\": \"t\", \"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"]}\n{\"id\": 2}\n".write(to: dir, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try QAExample.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("line 2"), "\($0)") }
    }
}
