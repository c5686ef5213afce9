import NIOCore

/// Enforces a minimum request-body data rate (`limits.request_body_min_rate` after
/// `limits.request_body_grace`), so that a client trickling a body cannot hold a connection and
/// an upstream connection for as long as it likes. Only time in which the gateway was waiting
/// for the client counts — a read was issued and no byte came. While the request path holds
/// reads back (the upstream is slow to take the body, or not connected yet) the clock stops, so
/// backpressure is never blamed on the client.
///
/// Not a `ChannelHandler`: the request path tells it about the parts and reads it handles anyway,
/// so the check costs no pipeline hop on every read of every request (a handler of its own was
/// measurable in the request-path benchmark). Its deadline is a timer of its own on an HTTP/1.1
/// connection, and a slot among the connection's stream deadlines on an HTTP/2 stream
/// (`HTTP2StreamDeadlines`), whose owner calls `deadlinePassed()`. Event-loop confined.
final class RequestBodyRate {
    /// `limits.request_body_min_rate` after `limits.request_body_grace`.
    struct Limit {
        let minimumRate: Int
        let grace: TimeAmount

        /// The limits' rate, nil when it is 0 (off).
        init?(_ limits: ServerLimits) {
            guard limits.requestBodyMinRate > 0 else { return nil }
            minimumRate = limits.requestBodyMinRate
            grace = TimeAmount(limits.requestBodyGrace)
        }
    }

    /// Bytes per second.
    private let minimumRate: Int
    private let grace: TimeAmount
    private var inBody = false
    private var received = 0
    /// Time spent waiting for this body's bytes, up to the last time some arrived.
    private var waited = TimeAmount.zero
    private var waitingSince: NIODeadline?
    private var timer: (any RequestBodyDeadline)?
    private var onTooSlow: (() -> Void)?
    /// The most whole seconds an allowance counts (about 285 years): TimeAmount counts nanoseconds in an Int64.
    private static let longestAllowance: Int64 = 9_000_000_000

    /// `onTooSlow` runs on `eventLoop` when the body in progress fell below the rate; it is
    /// dropped by `stop()`, which the owner must call when its connection goes away.
    convenience init(_ limit: Limit, eventLoop: any EventLoop, onTooSlow: @escaping () -> Void) {
        self.init(minimumRate: limit.minimumRate, grace: limit.grace, eventLoop: eventLoop, onTooSlow: onTooSlow)
    }

    init(minimumRate: Int, grace: TimeAmount, eventLoop: any EventLoop, onTooSlow: @escaping () -> Void) {
        self.minimumRate = minimumRate
        self.grace = grace
        self.onTooSlow = onTooSlow
        // Strong capture: `stop()` stops the timer, which breaks the cycle (see DeadlineTimer).
        timer = DeadlineTimer(eventLoop: eventLoop) { [self] in deadlinePassed() }
    }

    /// The same, its deadline kept by `deadline`, whose owner calls `deadlinePassed()` when it
    /// passes; `onTooSlow` runs from there.
    init(minimumRate: Int, grace: TimeAmount, deadline: any RequestBodyDeadline, onTooSlow: @escaping () -> Void) {
        self.minimumRate = minimumRate
        self.grace = grace
        self.onTooSlow = onTooSlow
        timer = deadline
    }

    /// A request head was read: a body, if any, follows.
    func headReceived() {
        inBody = true
        received = 0
        waited = .zero
        stopWaiting(now: nil)
    }

    func bodyReceived(bytes: Int) {
        received += bytes
        stopWaiting(now: .now())
    }

    func endReceived() {
        inBody = false
        stopWaiting(now: nil)
    }

    /// The request path is about to issue a read on the client's channel: from now on, until
    /// bytes come, the gateway waits for the client.
    func readIssued() {
        guard inBody, waitingSince == nil else { return }
        let now = NIODeadline.now()
        waitingSince = now
        timer?.set(now + allowance - waited)
    }

    func stop() {
        timer?.stop()
        timer = nil
        onTooSlow = nil
    }

    /// How long the body may have taken so far: the grace period plus the time its bytes take at
    /// the minimum rate.
    private var allowance: TimeAmount {
        // Whole seconds and the rest apart: `received * 10^9` overflows past 9.2 GB of body.
        let rate = Int64(minimumRate), bytes = Int64(clamping: received)
        return grace + .seconds(min(bytes / rate, Self.longestAllowance)) + .nanoseconds((bytes % rate) * 1_000_000_000 / rate)
    }

    private func stopWaiting(now: NIODeadline?) {
        if let waitingSince, let now { waited = waited + (now - waitingSince) }
        waitingSince = nil
        timer?.cancel()
    }

    /// The deadline set last passed: the body fell below the rate, unless bytes came meanwhile.
    func deadlinePassed() {
        guard inBody, let waitingSince else { return }
        guard waited + (.now() - waitingSince) >= allowance else {
            timer?.set(waitingSince + allowance - waited)
            return
        }
        inBody = false
        self.waitingSince = nil
        onTooSlow?()
    }
}

/// Where `RequestBodyRate` keeps its one deadline.
protocol RequestBodyDeadline: AnyObject {
    /// Pass at `deadline` unless set again or cancelled before.
    func set(_ deadline: NIODeadline)
    func cancel()
    /// Cancelled for good; drops what the deadline holds.
    func stop()
}

extension DeadlineTimer: RequestBodyDeadline {}
