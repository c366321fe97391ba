import LLM
import TestSupport
import XCTest
@testable import SAC

/// Continuous batching must not change an answer: several questions decoded together, joining
/// and leaving at step boundaries, give exactly the tokens each gives alone.
final class BatchedDecodingTests: XCTestCase {
    func testABatchedStepGivesEachSessionTheLogitsItsOwnStepGives() throws {
        let model = try DefaultModel.load()
        let prompts: [[Int32]] = [model.tokenizer.encode("The Danube rises in the Black Forest"),
                                  model.tokenizer.encode("Bees"), model.tokenizer.encode("John Smeaton built the third lighthouse on the rocks in"),
                                  model.tokenizer.encode("Gutenberg's press"), model.tokenizer.encode("One"),
                                  model.tokenizer.encode("Karl von Frisch decoded the waggle dance, which tells other bees")]
        // Six: one group of four rows and a group of two in the kernels.
        func sessions() throws -> [InferenceSession] {
            try prompts.map { p in
                let s = model.makeSession(capacity: 128)
                _ = try s.forward(p)
                return s
            }
        }
        let alone = try sessions(), together = try sessions()
        let next: [Int32] = [11, 2_000, 907, 3, 40_000, 12_345]
        let expected = try zip(alone, next).map { try $0.0.forward([$0.1]).logits }
        let got = try InferenceSession.step(together, tokens: next)
        for i in 0..<prompts.count {
            XCTAssertTrue(got[i] == expected[i], "session \(i): the batched step's logits differ from its own step's")
            XCTAssertEqual(together[i].cache.count, alone[i].cache.count)
            XCTAssertEqual(together[i].cache.nextPosition, alone[i].cache.nextPosition)
        }
        // And the caches they leave behind go on identically.
        XCTAssertTrue(try together[2].forward([5]).logits == alone[2].forward([5]).logits)
    }

    /// Blocks of several sessions in one batched prefill: each session's logits and cache are
    /// bitwise what its own forward gives (blocks short and long enough for both attention paths
    /// and for both matrix kernels, the short-block one and sgemm, a replaced embedding and
    /// explicit positions, caches of different lengths).
    func testABatchedPrefillGivesEachSessionTheLogitsItsOwnForwardGives() throws {
        let model = try DefaultModel.load()
        let H = model.config.hiddenSize
        let histories: [[Int32]] = [model.tokenizer.encode("The Danube rises in the Black Forest"), [],
                                    model.tokenizer.encode("John Smeaton built the third lighthouse"),
                                    model.tokenizer.encode("Karl von Frisch decoded the waggle dance, which tells other bees where"),
                                    model.tokenizer.encode("Gutenberg printed"), []]
        let bees = model.tokenizer.encode(String(repeating: "Honey bees live in colonies with one queen. ", count: 8))
        // 40 rows: past the short-query attention path, still a short block for the matrix kernel;
        // 60 and 52: long blocks (sgemm), which go through their own batched pass.
        let (mid, long, longer) = (Array(bees.prefix(40)), Array(bees.prefix(60)), Array(bees.suffix(52)))
        XCTAssertTrue(Linear.isShortBlock(rows: mid.count) && !Linear.isShortBlock(rows: long.count) && !Linear.isShortBlock(rows: longer.count))
        var replaced = ForwardOptions()
        replaced.embeddingReplacements = [(row: 0, vector: (0..<H).map { Float(($0 % 7) - 3) * 0.01 })]
        replaced.positions = (0..<5).map { 100 + Int32($0) }
        let blocks: [(tokens: [Int32], options: ForwardOptions)] = [
            (model.tokenizer.encode("Where does it rise?"), ForwardOptions()), (mid, ForwardOptions()),
            ([1, 200, 3_000, 4, 5], replaced), (model.tokenizer.encode("How far?"), ForwardOptions()),
            (long, ForwardOptions()), (longer, ForwardOptions()),
        ]
        XCTAssertTrue(blocks.allSatisfy { $0.tokens.count >= 2 }, "a one-row block would send every block through its own forward")
        func sessions() throws -> [InferenceSession] {
            try histories.map { h in
                let s = model.makeSession(capacity: 256)
                if !h.isEmpty { _ = try s.forward(h) }
                return s
            }
        }
        let alone = try sessions(), together = try sessions()
        let expected = try zip(alone, blocks).map { try $0.0.forward($0.1.tokens, options: $0.1.options).logits }
        let got = try InferenceSession.prefill(together, blocks: blocks)
        for i in 0..<blocks.count {
            XCTAssertTrue(got[i] == expected[i], "session \(i): the batched prefill's logits differ from its own forward's")
            XCTAssertEqual(together[i].cache.count, alone[i].cache.count)
            XCTAssertEqual(together[i].cache.nextPosition, alone[i].cache.nextPosition)
            XCTAssertTrue(try together[i].forward([7]).logits == alone[i].forward([7]).logits, "session \(i): the caches differ")
        }
    }

    func testGreedyAnswersBatchedAndAloneAreTheSameTokenByToken() throws {
        let model = try DefaultModel.load()
        let r5 = try SACAdapter.load(path: Goldens.path("sac-adapter-r5.safetensors"), for: model)
        let r15 = try SACAdapter.load(path: Goldens.path("sac-adapter-r15.safetensors"), for: model)
        let texts = ["The Danube is Europe's second-longest river. It rises in the Black Forest in Germany and flows 2,850 km to the Black Sea.",
                     "Honey bees live in colonies with one queen, thousands of workers and a few hundred drones. Karl von Frisch decoded the waggle dance.",
                     "The third Eddystone lighthouse was built by John Smeaton in 1759 from granite blocks dovetailed together."]
        // Mixed ratios and adapters (and none), question lengths and answer limits.
        let cases: [(SACAdapter?, Int, String, String, Int)] = [
            (r5, 5, texts[0], "Where does the Danube rise?", 12),
            (r15, 15, texts[1], "Who decoded the waggle dance of the honey bees, and how many queens does a colony have?", 20),
            (nil, 5, texts[2], "Who built it?", 6),
            (r5, 5, texts[2], "In which year was the third lighthouse built, and from which stone?", 16),
        ]
        var expected: [[Int32]] = [], contexts: [(SACDecoder, CompressedContext)] = []
        for (adapter, ratio, text, question, maxTokens) in cases {
            let ctx = try SACEncoder(model: model, mode: adapter.map { .adapter($0) } ?? .plain, ratio: ratio).compress(text: text)
            let decoder = try SACDecoder(model: model, adapter: adapter)
            contexts.append((decoder, ctx))
            expected.append(try decoder.answer(ctx, question: question, maxTokens: maxTokens).tokens)
        }
        // Two start together; the third joins after two steps, the fourth after four.
        var live: [DecodeSequence] = [], all: [DecodeSequence?] = Array(repeating: nil, count: cases.count)
        func join(_ i: Int) throws {
            let s = try contexts[i].0.start(contexts[i].1, question: cases[i].3, maxTokens: cases[i].4)
            all[i] = s
            live.append(s)
        }
        // The first two start together (one batched prefill of their first blocks).
        let firstTwo = try SACDecoder.start((0..<2).map {
            SACDecoder.StartRequest(decoder: contexts[$0].0, context: contexts[$0].1, question: cases[$0].3, maxTokens: cases[$0].4, sampling: .greedy)
        })
        for (i, s) in firstTwo.enumerated() { all[i] = s; live.append(s) }
        var steps = 0, widest = 0
        while !live.isEmpty {
            if steps == 2 { try join(2) }
            if steps == 4 { try join(3) }
            widest = max(widest, live.count)
            try SACDecoder.advance(live)
            live.removeAll { $0.isFinished }  // a finished sequence leaves at once
            steps += 1
        }
        XCTAssertGreaterThanOrEqual(widest, 3, "the batch really held several sequences")
        XCTAssertGreaterThan(expected.map(\.count).reduce(0, +), 20, "the answers are long enough to compare")
        for i in 0..<cases.count {
            XCTAssertEqual(all[i]!.tokens, expected[i], "case \(i): batched tokens differ from the unbatched answer")
        }
    }
}
