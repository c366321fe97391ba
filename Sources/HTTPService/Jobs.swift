import AnchorKVCore
import Foundation
import Synchronization

public enum JobState: String, Sendable, Codable {
    case queued, running, succeeded, failed, cancelled
    var finished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// What GET /v1/jobs/{id} shows.
public struct JobStatus: Sendable {
    public var id: String
    public var kind: String
    public var state: JobState
    /// Units done and (when known) the total, with a line saying what is happening.
    public var done = 0
    public var total: Int?
    public var message = ""
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var parameters: JSONValue
    public var result: JSONValue?
    public var error: JSONValue?

    public var fraction: Double? {
        if state == .succeeded { return 1 }
        guard let t = total, t > 0 else { return nil }
        return min(1, Double(done) / Double(t))
    }

    var json: JSONValue {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return [
            "id": .string(id), "kind": .string(kind), "state": .string(state.rawValue),
            "progress": ["done": .int(done), "total": total.map { .int($0) } ?? .null, "fraction": .optional(fraction), "message": .string(message)],
            "created_at": .string(f.string(from: createdAt)), "started_at": .optional(startedAt.map(f.string)),
            "finished_at": .optional(finishedAt.map(f.string)), "parameters": parameters, "result": result ?? .null, "error": error ?? .null,
        ]
    }
}

/// Handed to a job's work: report progress, and poll `shouldStop` (cancellation or shutdown)
/// between units that are each atomic, so a stopped job leaves nothing half-done.
public final class JobHandle: Sendable {
    public let id: String
    let flag: StopFlag
    private let registry: JobRegistry

    init(id: String, flag: StopFlag, registry: JobRegistry) {
        self.id = id; self.flag = flag; self.registry = registry
    }

    public func report(done: Int, total: Int?, message: String) {
        registry.update(id) { $0.done = done; $0.total = total; $0.message = message }
    }

    public var shouldStop: Bool { flag.shouldStop }
}

/// Long-running work started by a request (compaction, imports): each job has an id, a kind, a
/// state, progress and a result or error. Jobs of an exclusive kind run one at a time (a second
/// start is refused with 409). Finished jobs are kept, the most recent `keep` of them.
public final class JobRegistry: Sendable {
    public struct Refused: Error, Sendable { public var reason: String; public var conflict: Bool }

    private struct Entry { var status: JobStatus; var flag: StopFlag }
    private struct State { var jobs: [String: Entry] = [:]; var order: [String] = []; var accepting = true }
    private let state = Mutex(State())
    private let keep: Int

    public init(keep: Int = 100) { self.keep = max(1, keep) }

    /// Starts `work` in the background and returns its status (queued). The work's return value
    /// becomes the job's result; a thrown error its error (APIError JSON).
    @discardableResult
    public func start(kind: String, exclusive: Bool = true, parameters: JSONValue = .object([:]),
                      work: @escaping @Sendable (JobHandle) async throws -> JSONValue) throws -> JobStatus {
        let id = "job-" + UUID().uuidString.lowercased().prefix(13).replacingOccurrences(of: "-", with: "")
        let flag = StopFlag()
        let status = JobStatus(id: id, kind: kind, state: .queued, createdAt: Date(), parameters: parameters)
        try state.withLock { s in
            guard s.accepting else { throw Refused(reason: "the service is shutting down", conflict: false) }
            if exclusive, let running = s.jobs.values.first(where: { $0.status.kind == kind && !$0.status.state.finished }) {
                throw Refused(reason: "a \(kind) job is already \(running.status.state.rawValue) (\(running.status.id)); wait for it or cancel it", conflict: true)
            }
            s.jobs[id] = Entry(status: status, flag: flag)
            s.order.append(id)
            prune(&s)
        }
        let handle = JobHandle(id: id, flag: flag, registry: self)
        Task.detached { [self] in
            self.update(id) { $0.state = .running; $0.startedAt = Date() }
            do {
                let result = try await work(handle)
                let stopped = flag.shouldStop && flag.why != "timeout"
                self.update(id) {
                    $0.state = stopped ? .cancelled : .succeeded
                    $0.result = result
                    $0.finishedAt = Date()
                    if stopped { $0.message = "stopped (\(flag.why ?? "cancelled")) after \($0.done) of \($0.total.map(String.init) ?? "?")" }
                }
            } catch {
                let cancelled = error is CancellationError || flag.shouldStop
                self.update(id) {
                    $0.state = cancelled ? .cancelled : .failed
                    $0.error = APIError.from(error).json
                    $0.finishedAt = Date()
                }
            }
        }
        return status
    }

    public func status(_ id: String) -> JobStatus? { state.withLock { $0.jobs[id]?.status } }

    public func list() -> [JobStatus] { state.withLock { s in s.order.compactMap { s.jobs[$0]?.status } } }

    /// Asks a job to stop at its next safe point. False when there is no such job.
    public func cancel(_ id: String) -> Bool {
        guard let flag = state.withLock({ $0.jobs[id]?.flag }) else { return false }
        flag.stop("cancelled")
        return true
    }

    /// Jobs not finished yet.
    public var active: Int { state.withLock { $0.jobs.values.filter { !$0.status.state.finished }.count } }

    /// Refuses new jobs, asks running ones to stop at their next safe point and waits for them;
    /// gives up waiting when the calling task is cancelled (the shutdown grace ran out).
    public func shutdown() async {
        state.withLock { s in
            s.accepting = false
            for e in s.jobs.values where !e.status.state.finished { e.flag.stop("shutdown") }
        }
        while active > 0 {
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
        }
    }

    func update(_ id: String, _ change: (inout JobStatus) -> Void) {
        state.withLock { s in
            guard s.jobs[id] != nil else { return }
            change(&s.jobs[id]!.status)
            if s.jobs[id]!.status.state.finished { prune(&s) }
        }
    }

    private func prune(_ s: inout State) {
        var finished = s.order.filter { s.jobs[$0]?.status.state.finished == true }
        while finished.count > keep {
            let id = finished.removeFirst()
            s.jobs[id] = nil
            s.order.removeAll { $0 == id }
        }
    }
}
