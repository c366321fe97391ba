import Foundation
import SAC

/// Continuous batching of answers: one decode thread steps every question in flight together,
/// one token each per step (`SACDecoder.advance`), so each weight matrix is read once per step
/// for all of them. A question is prepared (checks, retrieval, its KV read) on its caller's
/// thread; it joins at the next step boundary, where the decode thread loads its KV into a
/// session and runs its first block, and leaves the step it ends, freeing its slot. All model
/// work runs on the one decode thread, so it has the kernels' thread pool to itself (callers
/// running forward passes beside it would take turns on the pool and oversubscribe the cores).
/// Greedy answers are token for token those of decoding alone.
///
/// The number of questions in flight is the callers' to bound (the HTTP service's query slots,
/// the CLI's batch size): every submitted question joins the next step.
public final class QueryBatcher: Sendable {
    /// What callers hand over and what the decode thread owns: guarded by `condition`.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var joining: [Entry] = []
        var stopped = false
        /// Set by the decode thread after it let go of every question it held.
        var exited = false
        var steps = 0
        var stepSizeTotal = 0
        var largestBatch = 0
    }

    private final class Entry: @unchecked Sendable {
        let question: KnowledgeService.PreparedQuestion
        let onToken: @Sendable (Int32) -> Bool
        let done: @Sendable ((any Error)?) -> Void
        init(_ q: KnowledgeService.PreparedQuestion, onToken: @escaping @Sendable (Int32) -> Bool, done: @escaping @Sendable ((any Error)?) -> Void) {
            question = q; self.onToken = onToken; self.done = done
        }
    }

    private let shared = Shared()
    let service: KnowledgeService
    /// Called after every step with the number of sequences it advanced.
    let onStep: (@Sendable (Int) -> Void)?

    public init(service: KnowledgeService, onStep: (@Sendable (Int) -> Void)? = nil) {
        self.service = service
        self.onStep = onStep
        let shared = self.shared, onStep = self.onStep
        let t = Thread {
            Self.decodeLoop(shared, onStep: onStep)
            shared.condition.lock()
            shared.exited = true
            shared.condition.broadcast()
            shared.condition.unlock()
        }
        t.name = "anchorkv-decode"
        t.stackSize = 8 << 20
        t.start()
    }

    deinit { requestStop() }

    /// Tells the decode thread to stop once the questions in flight are done.
    private func requestStop() {
        shared.condition.lock()
        shared.stopped = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }

    /// Finishes the questions in flight, stops the decode thread and waits until it has let go of
    /// them. Call it before the process exits: the last reference to a question can be the one
    /// that closes the store, and closing RocksDB on that thread while `exit` runs the libraries'
    /// destructors crashes the process (seen as a SIGSEGV after the last answer was printed).
    public func shutdown() {
        requestStop()
        shared.condition.lock()
        while !shared.exited { shared.condition.wait() }
        shared.condition.unlock()
    }

    /// Steps run so far, their mean and their largest batch.
    public var stepStats: (steps: Int, meanBatch: Double, largestBatch: Int) {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        return (shared.steps, shared.steps == 0 ? 0 : Double(shared.stepSizeTotal) / Double(shared.steps), shared.largestBatch)
    }

    /// Hands a prepared question to the decode thread. `onToken` runs there for each answer
    /// token (keep it short; false stops the answer); `done` runs there once, when the answer
    /// ended (nil) or its step failed.
    public func submit(_ q: KnowledgeService.PreparedQuestion, onToken: @escaping @Sendable (Int32) -> Bool,
                       done: @escaping @Sendable ((any Error)?) -> Void) {
        shared.condition.lock()
        if shared.stopped {
            shared.condition.unlock()
            done(CoreError(.unavailable, "the decoder has stopped"))
            return
        }
        shared.joining.append(Entry(q, onToken: onToken, done: done))
        shared.condition.broadcast()
        shared.condition.unlock()
    }

    /// Answers a question in the shared batch, blocking the calling thread until it is done.
    public func query(_ q: KnowledgeService.Question, onToken: @escaping @Sendable (Int32) -> Bool = { _ in true }) throws(CoreError) -> Answer {
        let p = try service.prepare(q)
        let finished = DispatchSemaphore(value: 0)
        let failure = LockedBox<(any Error)?>(nil)
        submit(p, onToken: onToken) { e in
            failure.value = e
            finished.signal()
        }
        finished.wait()
        if let e = failure.value { throw CoreError.from(e) }
        return try service.finish(p)
    }

    /// Joiners started together as soon as this many wait...
    static let joinBatch = 3
    /// ...or the oldest has waited this many steps (each ~30-60 ms at a batch of 8 on 2 cores).
    static let joinWaitSteps = 2

    /// The joiners' first blocks in one batched prefill; should that fail, each alone, so that
    /// one bad question fails by itself.
    private static func start(_ joining: [Entry], into active: inout [Entry]) {
        if (try? KnowledgeService.PreparedQuestion.start(joining.map(\.question))) != nil {
            active += joining
            return
        }
        for e in joining {
            do {
                _ = try e.question.start()
                active.append(e)
            } catch {
                e.done(error)
            }
        }
    }

    private static func decodeLoop(_ shared: Shared, onStep: (@Sendable (Int) -> Void)?) {
        var active: [Entry] = []
        // Joiners not started yet, and the steps the oldest of them has waited.
        var held: [Entry] = []
        var heldSteps = 0
        while true {
            shared.condition.lock()
            while active.isEmpty && held.isEmpty && shared.joining.isEmpty && !shared.stopped { shared.condition.wait() }
            if shared.stopped && active.isEmpty && held.isEmpty && shared.joining.isEmpty {
                shared.condition.unlock()
                return
            }
            held += shared.joining
            shared.joining.removeAll()
            shared.condition.unlock()
            // A prefill reads every weight whatever its rows, so joiners that arrive one by one
            // while others decode wait a few steps for company and then share one prefill. With
            // nothing decoding they start at once.
            if !held.isEmpty && (active.isEmpty || held.count >= joinBatch || heldSteps >= joinWaitSteps) {
                start(held, into: &active)
                held.removeAll()
                heldSteps = 0
            } else if !held.isEmpty {
                heldSteps += 1
            }
            if active.isEmpty { continue }

            let sequences = active.map { $0.question.sequence! }
            let produced: [Int32?]
            do {
                produced = try SACDecoder.advance(sequences)
            } catch {
                for e in active { e.done(error) }
                active.removeAll()
                continue
            }
            for (e, t) in zip(active, produced) {
                guard let t else { continue }
                e.question.noteToken()
                if !e.onToken(t) { e.question.sequence!.finish() }
            }
            shared.condition.lock()
            shared.steps += 1
            shared.stepSizeTotal += active.count
            shared.largestBatch = max(shared.largestBatch, active.count)
            shared.condition.unlock()
            onStep?(active.count)
            active.removeAll { e in
                guard e.question.sequence!.isFinished else { return false }
                e.done(nil)
                return true
            }
        }
    }
}

/// A value shared between threads behind a lock.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }
    /// A read-modify-write under the lock (`value[i] = x` from two threads would lose one).
    func mutate(_ body: (inout T) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        body(&stored)
    }
}
