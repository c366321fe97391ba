import Dispatch
import Foundation

/// Splits row ranges across a fixed number of workers (the machine has 2 cores; OpenBLAS
/// owns the threads during sgemm, these are used for mat-vec and attention kernels).
public enum Parallel {
    /// Worker count: ANCHORKV_THREADS, else the active processor count.
    public static let workers: Int = {
        if let s = ProcessInfo.processInfo.environment["ANCHORKV_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls body with disjoint sub-ranges covering 0..<count. Small jobs run inline.
    public static func forRanges(_ count: Int, minPerWorker: Int = 1, _ body: (Range<Int>) -> Void) {
        let n = min(workers, max(1, count / max(minPerWorker, 1)))
        if n <= 1 { body(0..<count); return }
        // The body only touches disjoint rows of caller-owned buffers; concurrentPerform
        // returns before this function does, so the non-escaping closure is safe to share.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: n) { w in
                let lo = count * w / n, hi = count * (w + 1) / n
                if lo < hi { shared.value(lo..<hi) }
            }
        }
    }
}

/// Wraps a value whose thread safety the caller guarantees (disjoint writes, joined before use).
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
