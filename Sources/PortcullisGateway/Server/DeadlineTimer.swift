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
    /// When it expires; nil while not armed.
    private(set) var deadline: NIODeadline?
    private var pending = PendingCheck()
    private var onExpire: (() -> Void)?

    init(eventLoop: any EventLoop, onExpire: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.onExpire = onExpire
    }

    /// Expire at `deadline` unless reset or cancelled before.
    func set(_ deadline: NIODeadline) {
        self.deadline = deadline
        if !pending.isPending(by: deadline) { scheduleCheck(at: deadline) }
    }

    func set(after timeout: TimeAmount) {
        set(.now() + timeout)
    }

    func cancel() {
        deadline = nil
    }

    /// Expires now, if armed (the overload guard cutting a stall short).
    func expireNow() {
        guard deadline != nil else { return }
        deadline = nil
        onExpire?()
    }

    /// Stops for good (handler removed).
    func stop() {
        deadline = nil
        pending.cancel()
        onExpire = nil
    }

    private func check() {
        pending.ran()
        guard let deadline else { return }
        if deadline <= .now() {
            self.deadline = nil
            onExpire?()
        } else {
            scheduleCheck(at: deadline)
        }
    }

    private func scheduleCheck(at when: NIODeadline) {
        pending.schedule(at: when, on: eventLoop) { [self] in check() }
    }
}
