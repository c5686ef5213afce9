import NIOCore

/// The one check a deadline keeper (`DeadlineTimer`, `HTTP2StreamDeadlines`) has scheduled on its
/// event loop. A keeper schedules one only when none is pending by the deadline it was given
/// (`isPending(by:)`), so the deadlines it serves can move later or come and go without a task
/// scheduled and cancelled on the loop's heap for each; asking first also spares the hot path the
/// check's closure. Event-loop confined.
struct PendingCheck {
    /// When the pending check runs; nil when none is pending.
    private(set) var at: NIODeadline?
    private var scheduled: Scheduled<Void>?

    /// Whether a check is pending that runs by `when`.
    func isPending(by when: NIODeadline) -> Bool {
        at.map { $0 <= when } ?? false
    }

    /// Runs `check` at `when` on `eventLoop` instead of any check pending.
    mutating func schedule(at when: NIODeadline, on eventLoop: any EventLoop, _ check: @escaping () -> Void) {
        scheduled?.cancel()
        at = when
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: when, check)
    }

    /// The pending check is running: none is pending any more.
    mutating func ran() {
        scheduled = nil
        at = nil
    }

    /// No check is pending any more (the one that was is cancelled).
    mutating func cancel() {
        scheduled?.cancel()
        ran()
    }
}
