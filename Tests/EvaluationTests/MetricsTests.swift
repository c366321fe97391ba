import XCTest
@testable import Evaluation

/// Metric values worked out by hand (and matching the SQuAD v1.1 evaluation script's rules).
final class MetricsTests: XCTestCase {
    func testSquadNormalization() {
        XCTAssertEqual(Metrics.normalize("The  Eiffel Tower!"), "eiffel tower")
        XCTAssertEqual(Metrics.normalize("an apple, a pear"), "apple pear")
        XCTAssertEqual(Metrics.normalize("Theatre"), "theatre", "articles only as whole words")
    }

    func testExactMatchAndF1TakeTheBestGold() {
        XCTAssertEqual(Metrics.exactMatch("the Danube", ["Volga", "Danube"]), 1)
        XCTAssertEqual(Metrics.exactMatch("Danube river", ["Danube"]), 0)
        // pred {danube, river}, gold {danube}: P = 1/2, R = 1, F1 = 2/3.
        XCTAssertEqual(Metrics.tokenF1("Danube river", ["Danube"]), 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(Metrics.tokenF1("Danube river", ["Volga", "the river Danube"]), 1, accuracy: 1e-12)
        XCTAssertEqual(Metrics.tokenF1("", ["x"]), 0)
        // Repeated tokens count as a bag: pred {x, y, y}, gold {y, y, z}: 2 common, F1 2/3.
        XCTAssertEqual(Metrics.tokenF1("x y y", ["y y z"]), 2.0 / 3.0, accuracy: 1e-12)
    }

    func testPaperMetricsUseTheFirstGoldCaseSensitiveSets() {
        // Sets: pred {John, Smith} vs gold {John}: P 1/2, R 1 -> 2/3.
        XCTAssertEqual(Metrics.rouge1F("John Smith.", firstGold: "John"), 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(Metrics.rouge1F("john", firstGold: "John"), 0, "case-sensitive")
        XCTAssertEqual(Metrics.rouge1F("Smith Smith", firstGold: "Smith"), 1, "sets, not bags")
        XCTAssertEqual(Metrics.rouge1F("Volga", firstGold: "Danube"), 0)
        XCTAssertEqual(Metrics.rawExactMatch(" 42\n", firstGold: "42"), 1)
        XCTAssertEqual(Metrics.rawExactMatch("forty-two", firstGold: "42"), 0)
        let s = Score(prediction: "The Danube", answers: ["Danube", "the Danube"])
        XCTAssertEqual(s.em, 1); XCTAssertEqual(s.f1, 1); XCTAssertEqual(s.rawEM, 0)
        XCTAssertEqual(s.rouge1, 2.0 / 3.0, accuracy: 1e-12)
    }
}
