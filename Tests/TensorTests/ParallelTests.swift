import Foundation
import XCTest
@testable import Tensor

/// The kernel pool: every index run exactly once, per-thread slots never shared by two ranges at
/// a time, and the same ranges whoever runs them (the results of the products must not depend on
/// scheduling), also while other threads keep the cores busy.
final class ParallelTests: XCTestCase {
    /// Runs one job and returns its ranges (sorted) after checking coverage and slots.
    private func runJob(count: Int, minPerWorker: Int, chunksPerWorker: Int = 4) -> [Range<Int>] {
        let workers = Parallel.workers
        // A job small for its minimum runs on fewer threads: only those slots may appear.
        let threads = min(workers, max(1, count / minPerWorker))
        let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: count)
        hits.initialize(repeating: 0)
        defer { hits.deallocate() }
        let busy = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(workers, 1))
        busy.initialize(repeating: 0)
        defer { busy.deallocate() }
        let lock = NSLock()
        var ranges: [Range<Int>] = []
        var clash = false, badSlot = false
        Parallel.forRanges(count, minPerWorker: minPerWorker, chunksPerWorker: chunksPerWorker) { range, slot in
            guard slot >= 0 && slot < threads else { lock.lock(); badSlot = true; lock.unlock(); return }
            lock.lock()
            if busy[slot] != 0 { clash = true }
            busy[slot] += 1
            ranges.append(range)
            lock.unlock()
            for i in range { hits[i] += 1 }
            usleep(UInt32.random(in: 0...200))
            lock.lock()
            busy[slot] -= 1
            lock.unlock()
        }
        XCTAssertFalse(badSlot, "a slot outside 0..<\(threads)")
        XCTAssertFalse(clash, "two ranges ran at once on one slot")
        XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "count \(count): \(hits.filter { $0 != 1 }.count) indices not run exactly once")
        return ranges.sorted { $0.lowerBound < $1.lowerBound }
    }

    func testEveryIndexOnceAndTheSameRangesEveryTime() {
        for (count, minPerWorker) in [(1, 1), (2, 1), (9, 1), (72, 8), (576, 64), (1536, 64), (1000, 1)] {
            let first = runJob(count: count, minPerWorker: minPerWorker)
            XCTAssertEqual(first.first?.lowerBound, 0)
            XCTAssertEqual(first.last?.upperBound, count)
            for _ in 0..<5 { XCTAssertEqual(runJob(count: count, minPerWorker: minPerWorker), first, "count \(count)") }
        }
    }

    /// Finer chunks (the short-block matrix kernel asks for 16 a worker), and requests outside
    /// 1...32 clamped: still each index once, the same ranges every time, as many as asked.
    func testChunksPerWorker() {
        let threads = min(Parallel.workers, 1536 / 48)
        for (chunks, expected) in [(16, 16), (1, 1), (0, 1), (1_000, 32)] {
            let first = runJob(count: 1536, minPerWorker: 48, chunksPerWorker: chunks)
            if threads > 1 { XCTAssertEqual(first.count, threads * expected, "\(chunks) chunks a worker") }
            XCTAssertEqual(runJob(count: 1536, minPerWorker: 48, chunksPerWorker: chunks), first)
        }
    }

    func testJobsFinishWhileOtherThreadsHoldTheCores() {
        // Threads spinning on every core: a pool worker may not run for a whole time slice, and
        // the caller must then run its chunks (still each index once, the same ranges).
        let stop = LockedFlag()
        let spinners = (0..<max(Parallel.workers, 2)).map { _ in
            let t = Thread { while !stop.isSet { var x = 0.0; for i in 0..<10_000 { x += Double(i) }; _ = x } }
            t.start()
            return t
        }
        defer { stop.set() }
        _ = spinners
        let first = runJob(count: 576, minPerWorker: 64)
        for _ in 0..<50 { XCTAssertEqual(runJob(count: 576, minPerWorker: 64), first) }
    }
}

private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
