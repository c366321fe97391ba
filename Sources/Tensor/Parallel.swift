import CKernels
import Foundation

/// Splits row ranges across a fixed number of workers (the machine has 2 cores; OpenBLAS
/// owns its own threads during sgemm, these run the mat-vec and attention kernels).
public enum Parallel {
    /// Worker count: ANCHORKV_THREADS, else the active processor count.
    public static let workers: Int = {
        if let s = ProcessInfo.processInfo.environment["ANCHORKV_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls body with disjoint sub-ranges covering 0..<count on the CKernels spin pool (a few
    /// chunks per worker, taken by whichever thread is free). Small jobs, and calls made while
    /// another thread holds the pool, run inline.
    public static func forRanges(_ count: Int, minPerWorker: Int = 1, chunksPerWorker: Int = 4, _ body: (Range<Int>) -> Void) {
        forRanges(count, minPerWorker: minPerWorker, chunksPerWorker: chunksPerWorker) { range, _ in body(range) }
    }

    /// The same, telling the body which thread runs each range (0..<workers): a body may index
    /// per-thread scratch with it, since one thread runs one range at a time.
    /// `chunksPerWorker`: how finely the pool cuts the work (see akv_pool_run_chunked).
    public static func forRanges(_ count: Int, minPerWorker: Int = 1, chunksPerWorker: Int = 4, _ body: (Range<Int>, Int) -> Void) {
        let n = min(workers, max(1, count / max(minPerWorker, 1)))
        if n <= 1 { body(0..<count, 0); return }
        startPool
        // The pool returns only after every range ran, so the non-escaping closure outlives its use.
        withoutActuallyEscaping(body) { body in
            var job = body
            withUnsafeMutablePointer(to: &job) { ctx in
                akv_pool_run_chunked(Int64(count), Int64(n), Int64(chunksPerWorker), { ctx, lo, hi, slot in
                    ctx!.assumingMemoryBound(to: ((Range<Int>, Int) -> Void).self).pointee(Int(lo)..<Int(hi), Int(slot))
                }, ctx)
            }
        }
    }

    private static let startPool: Void = {
        akv_pool_set_threads(Int32(workers))
        _ = akv_pool_threads()
    }()
}

/// Wraps a value whose thread safety the caller guarantees (disjoint writes, joined before use).
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
