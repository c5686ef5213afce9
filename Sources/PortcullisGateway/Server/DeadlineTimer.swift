import NIOCore

/// A timeout that is reset far more often than it fires — once per request on a keep-alive
/// connection. Scheduling and cancelling an event-loop task per reset showed up in profiles
/// (heap inserts and removals); this keeps the deadline in a field and a single scheduled check
/// that re-arms itself only when the deadline moved. Event-loop confined.
///
/// No weak references, here or in the handlers that own a timer: a weakly referenced object gets
/// a side table, and then every retain and release of it takes the slow path (seen in request-path
/// profiles). Owners call `stop()` in `handlerRemoved`, which NIO calls on every channel close;
/// that cancels the scheduled check and drops `onExpire`, breaking the owner → timer → owner cycle.
final class DeadlineTimer {
    private let eventLoop: any EventLoop
    private var deadline: NIODeadline?
    private var scheduled: Scheduled<Void>?
    private var scheduledFor: NIODeadline?
    private var onExpire: (() -> Void)?

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
        onExpire = nil
    }

    private func schedule(at when: NIODeadline) {
        scheduled?.cancel()
        scheduledFor = when
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: when) { [self] in
            check()
        }
    }

    private func check() {
        scheduled = nil
        scheduledFor = nil
        guard let deadline else { return }
        if deadline <= .now() {
            self.deadline = nil
            onExpire?()
        } else {
            schedule(at: deadline)
        }
    }
}
