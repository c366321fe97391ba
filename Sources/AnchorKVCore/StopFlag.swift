import Synchronization

/// A flag that long work polls to stop early at a safe point (a deadline passed, the client went
/// away, the job was cancelled, the service is shutting down). Once stopped it stays stopped,
/// with the first reason given.
public final class StopFlag: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let reasonGiven = Mutex<String?>(nil)
    public let deadline: ContinuousClock.Instant?
    /// Polled too: a reason to stop from outside (e.g. the service shutting down), nil to go on.
    private let external: (@Sendable () -> String?)?

    public init(deadline: ContinuousClock.Instant? = nil, external: (@Sendable () -> String?)? = nil) {
        self.deadline = deadline
        self.external = external
    }

    public func stop(_ why: String) {
        reasonGiven.withLock { if $0 == nil { $0 = why } }
        stopped.store(true, ordering: .releasing)
    }

    /// True once stopped, or once the deadline has passed or `external` gives a reason.
    public var shouldStop: Bool {
        if stopped.load(ordering: .acquiring) { return true }
        if let d = deadline, ContinuousClock.now >= d { stop("timeout"); return true }
        if let why = external?() { stop(why); return true }
        return false
    }

    /// The short reason ("timeout", "cancelled", "shutdown", "client disconnected"), nil while running.
    public var why: String? { reasonGiven.withLock { $0 } }

    /// The reason as a phrase for messages ("the request timed out").
    public var reason: String {
        switch why {
        case "timeout": return "the request timed out"
        case "cancelled": return "the request was cancelled"
        case "shutdown": return "the service is shutting down"
        case nil: return "the run was not stopped"
        case let w?: return w
        }
    }
}
