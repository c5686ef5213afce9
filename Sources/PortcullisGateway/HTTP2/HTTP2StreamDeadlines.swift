import NIOCore

/// A stream whose response-header deadline `HTTP2StreamDeadlines` keeps.
protocol HTTP2StreamDeadlineOwner: AnyObject {
    /// The deadline passed before it was cancelled.
    func responseHeaderDeadlinePassed()
}

/// The response-header deadlines of one HTTP/2 client connection's streams, behind one scheduled
/// check. A timer per stream cost each stream a task scheduled on the event loop and cancelled —
/// a heap insert, a heap removal and a promise failed — though nearly every deadline is cancelled
/// long before it comes (profiled at several per cent of an HTTP/2 request's CPU). Here arming and
/// cancelling a deadline are a dictionary insert and removal. The check is scheduled for the
/// earliest deadline armed while none earlier is pending; when it runs it expires what has passed
/// and schedules itself for the earliest left, so with one timeout per route it runs about once
/// per timeout while streams come and go, scanning the streams then armed (at most the
/// connection's concurrent streams).
///
/// An armed owner is held strongly until its deadline is cancelled or passes; stream handlers
/// cancel theirs in `handlerRemoved`, and the connection stops the whole when it closes.
/// Confined to the connection's event loop.
final class HTTP2StreamDeadlines {
    private let eventLoop: any EventLoop
    private var armed: [ObjectIdentifier: (deadline: NIODeadline, owner: any HTTP2StreamDeadlineOwner)] = [:]
    private var pending = PendingCheck()

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// How many deadlines are armed.
    var count: Int { armed.count }

    /// `owner`'s deadline is `deadline`, replacing any it had.
    func arm(_ owner: any HTTP2StreamDeadlineOwner, at deadline: NIODeadline) {
        armed[ObjectIdentifier(owner)] = (deadline, owner)
        if !pending.isPending(by: deadline) { scheduleCheck(at: deadline) }
    }

    func arm(_ owner: any HTTP2StreamDeadlineOwner, after timeout: TimeAmount) {
        arm(owner, at: eventLoop.now + timeout)
    }

    /// `owner` has no deadline (any it had is dropped).
    func cancel(_ owner: any HTTP2StreamDeadlineOwner) {
        armed.removeValue(forKey: ObjectIdentifier(owner))
    }

    /// The connection closed: nothing is armed or scheduled any more.
    func stop() {
        armed.removeAll()
        pending.cancel()
    }

    private func scheduleCheck(at when: NIODeadline) {
        pending.schedule(at: when, on: eventLoop) { [self] in check() }
    }

    private func check() {
        pending.ran()
        let now = eventLoop.now
        var passed: [(key: ObjectIdentifier, owner: any HTTP2StreamDeadlineOwner)] = []
        var earliest: NIODeadline?
        for (key, entry) in armed {
            if entry.deadline <= now {
                passed.append((key, entry.owner))
            } else if earliest.map({ entry.deadline < $0 }) ?? true {
                earliest = entry.deadline
            }
        }
        for (key, _) in passed { armed.removeValue(forKey: key) }
        if let earliest { scheduleCheck(at: earliest) }
        // After the bookkeeping: an owner told may arm or cancel deadlines.
        for (_, owner) in passed { owner.responseHeaderDeadlinePassed() }
    }
}
