import XCTest
@testable import SAC

/// The anchor rule of ../shared/spec/SAC.md, with expected values written out by hand.
final class AnchorSelectionTests: XCTestCase {
    let uniform = UniformAnchors()

    func testShortWindowsGetOneAnchorAtZero() {
        // o = 2, 7, 25 for r = 5, 15, 51: L = 1 and L = o give one anchor at 0.
        for (r, o) in [(5, 2), (15, 7), (51, 25)] {
            XCTAssertEqual(uniform.anchors(windowLength: 1, ratio: r), [0], "r=\(r) L=1")
            XCTAssertEqual(uniform.anchors(windowLength: o, ratio: r), [0], "r=\(r) L=o")
            XCTAssertEqual(uniform.anchors(windowLength: o + 1, ratio: r), [o], "r=\(r) L=o+1")
        }
    }

    func testWindowOf23() {
        XCTAssertEqual(uniform.anchors(windowLength: 23, ratio: 5), [2, 7, 12, 17, 22])
        XCTAssertEqual(uniform.anchors(windowLength: 23, ratio: 15), [7, 22])
        XCTAssertEqual(uniform.anchors(windowLength: 23, ratio: 51), [0])  // 23 <= o = 25
    }

    func testFullAndAlmostFullWindows() {
        // ceil((L - o) / r): 102 / 34 / 10 for both 509 and 510.
        for (r, count, o) in [(5, 102, 2), (15, 34, 7), (51, 10, 25)] {
            for L in [509, 510] {
                let a = uniform.anchors(windowLength: L, ratio: r)
                XCTAssertEqual(a.count, count, "r=\(r) L=\(L)")
                XCTAssertEqual(UniformAnchors.count(windowLength: L, ratio: r), count)
                XCTAssertEqual(a.first, o)
                XCTAssertEqual(a, Array(stride(from: o, through: o + (count - 1) * r, by: r)))
                XCTAssertLessThan(a.last!, L)
            }
        }
        XCTAssertEqual(uniform.anchors(windowLength: 510, ratio: 15).last, 502)
        XCTAssertEqual(uniform.anchors(windowLength: 510, ratio: 51).last, 484)
        XCTAssertEqual(uniform.anchors(windowLength: 510, ratio: 1), Array(0..<510), "ratio 1 keeps every token")
    }

    func testEvenRatioUsesLowerMiddle() {
        XCTAssertEqual(uniform.anchors(windowLength: 10, ratio: 4), [1, 5, 9])
    }

    func testRandomAnchorsMatchUniformCountAndAreDeterministic() {
        let random = RandomAnchors(seed: 42)
        for (L, r) in [(510, 5), (509, 15), (23, 15), (1, 51), (100, 51)] {
            let a = random.anchors(windowLength: L, ratio: r, windowIndex: 3)
            XCTAssertEqual(a.count, UniformAnchors.count(windowLength: L, ratio: r))
            XCTAssertEqual(a, a.sorted())
            XCTAssertEqual(Set(a).count, a.count)
            XCTAssertTrue(a.allSatisfy { $0 >= 0 && $0 < L })
            XCTAssertEqual(a, random.anchors(windowLength: L, ratio: r, windowIndex: 3))
        }
        XCTAssertNotEqual(random.anchors(windowLength: 510, ratio: 5, windowIndex: 0),
                          random.anchors(windowLength: 510, ratio: 5, windowIndex: 1))
        XCTAssertNotEqual(random.anchors(windowLength: 510, ratio: 5, windowIndex: 0), uniform.anchors(windowLength: 510, ratio: 5))
    }

    func testWindows() {
        XCTAssertEqual(WindowLayout(size: 510).windows(count: 1043), [0..<510, 510..<1020, 1020..<1043])
        XCTAssertEqual(WindowLayout(size: 510).windows(count: 510), [0..<510])
        XCTAssertEqual(WindowLayout(size: 510).windows(count: 1), [0..<1])
    }
}
