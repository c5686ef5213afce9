import NIOCore

/// A timeout that is reset far more often than it fires — once per request on a keep-alive
/// connection. Scheduling and cancelling an event-loop task per reset showed up in profiles
/// (heap inserts and removals); this keeps the deadline in a field and a single scheduled check
/// that re-arms itself only when the deadline moved. Event-loop confined.
final class DeadlineTimer {
    private let eventLoop: any EventLoop
    private var deadline: NIODeadline?
    private var scheduled: Scheduled<Void>?
    private var scheduledFor: NIODeadline?
    private let onExpire: () -> Void

    init(eventLoop: any EventLoop, onExpire: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.onExpire = onExpire
    }

    /// Expire at `deadline` unless reset or cancelled before.
    func set(_ deadline: NIODeadline) {
        self.deadline = deadline
        if let scheduledFor, scheduledFor <= deadline, scheduled != nil { return }
        schedule(at: deadline)
    }

    func set(after timeout: TimeAmount) {
        set(.now() + timeout)
    }

    func cancel() {
        deadline = nil
    }

    /// Stops for good (handler removed).
    func stop() {
        deadline = nil
        scheduled?.cancel()
        scheduled = nil
    }

    private func schedule(at when: NIODeadline) {
        scheduled?.cancel()
        scheduledFor = when
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: when) { [weak self] in
            self?.check()
        }
    }

    private func check() {
        scheduled = nil
        scheduledFor = nil
        guard let deadline else { return }
        if deadline <= .now() {
            self.deadline = nil
            onExpire()
        } else {
            schedule(at: deadline)
        }
    }
}
