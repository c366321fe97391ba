import AnchorKVCore
import Foundation
import Synchronization

/// A counting semaphore for async code: waiters queue in FIFO order without holding a thread,
/// give up at a deadline or on cancellation, and are refused outright when the queue is full.
final class AsyncSemaphore: Sendable {
    enum Failure: Error { case queueFull, timedOut }

    private struct Waiter { let id: UInt64; let continuation: CheckedContinuation<Void, any Error> }
    private struct State {
        var permits: Int
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
        /// Waiters failed (timeout, cancellation) before their continuation was registered.
        var failedEarly: [UInt64: any Error] = [:]
    }
    private let state: Mutex<State>
    let capacity: Int
    let maxWaiters: Int

    init(permits: Int, maxWaiters: Int) {
        state = Mutex(State(permits: permits))
        capacity = permits
        self.maxWaiters = maxWaiters
    }

    /// Permits in use and waiters queued (for /health).
    var usage: (busy: Int, queued: Int) { state.withLock { (capacity - $0.permits, $0.waiters.count) } }

    /// Takes a permit, waiting until `deadline` at most. Pair with `release()`.
    func acquire(deadline: ContinuousClock.Instant) async throws {
        enum Start { case acquired, full, wait(UInt64) }
        let start: Start = state.withLock { s in
            if s.permits > 0 && s.waiters.isEmpty { s.permits -= 1; return .acquired }
            if s.waiters.count >= maxWaiters { return .full }
            s.nextID += 1
            return .wait(s.nextID)
        }
        let id: UInt64
        switch start {
        case .acquired: return
        case .full: throw Failure.queueFull
        case .wait(let i): id = i
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            if !Task.isCancelled { self?.fail(id, Failure.timedOut) }
        }
        defer {
            timer.cancel()
            state.withLock { _ = $0.failedEarly.removeValue(forKey: id) }
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let early: (any Error)? = state.withLock { s in
                    if let e = s.failedEarly.removeValue(forKey: id) { return e }
                    s.waiters.append(Waiter(id: id, continuation: c))
                    return nil
                }
                if let early { c.resume(throwing: early) }
            }
        } onCancel: {
            fail(id, CancellationError())
        }
    }

    func release() {
        let next: Waiter? = state.withLock { s in
            if s.waiters.isEmpty { s.permits += 1; return nil }
            return s.waiters.removeFirst()  // the permit passes straight to the next waiter
        }
        next?.continuation.resume()
    }

    private func fail(_ id: UInt64, _ error: any Error) {
        let waiter: Waiter? = state.withLock { s in
            if let i = s.waiters.firstIndex(where: { $0.id == id }) { return s.waiters.remove(at: i) }
            // Not registered yet: remember, unless it was already served (then nothing to do).
            if s.failedEarly[id] == nil { s.failedEarly[id] = error }
            return nil
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Runs `body` holding a permit.
    func withPermit<T: Sendable>(deadline: ContinuousClock.Instant, _ body: () async throws -> T) async throws -> T {
        try await acquire(deadline: deadline)
        defer { release() }
        return try await body()
    }
}

/// Runs blocking work (model forward passes, RocksDB scans) on a thread of its own, so the
/// cooperative pool that serves HTTP keeps its threads. Cancelling the awaiting task raises
/// `flag`; the work decides where it can stop.
func runBlocking<T: Sendable>(name: String = "anchorkv-work", flag: StopFlag? = nil,
                              _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            let t = Thread {
                do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
            }
            t.name = name
            t.stackSize = 8 << 20
            t.start()
        }
    } onCancel: {
        flag?.stop("cancelled")
    }
}
