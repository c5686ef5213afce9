import NIOCore
import NIOHTTP2

/// One HTTP/2 connection to an upstream and how many streams it may still carry: the streams the
/// gateway has open on it against the upstream's SETTINGS_MAX_CONCURRENT_STREAMS. Confined to the
/// event loop of its `HTTP2UpstreamPool`.
final class HTTP2UpstreamConnection {
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    let channel: any Channel
    /// Streams opened on this connection and not yet closed.
    var openStreams = 0
    /// The upstream's SETTINGS_MAX_CONCURRENT_STREAMS: until its SETTINGS arrive, what another
    /// connection to the target was told, else 100 (the least RFC 9113 §6.5.2 recommends a peer
    /// allow); unlimited when they do not name one.
    var maxStreams = 100
    /// Whether the upstream's SETTINGS have been read.
    var settingsSeen = false
    /// The upstream sent GOAWAY: no new stream goes on this connection (swift-nio-http2 would fail
    /// it), and it closes once its streams end — an upstream that keeps it open after GOAWAY would
    /// otherwise hold one of the target's connections for nothing.
    private(set) var goingAway = false
    /// The resets sent on it (`HTTP2UpstreamResetBudget`).
    var resets = HTTP2UpstreamResetBudget()
    /// It spent its reset budget: no new stream goes on it, and it closes once its streams end.
    var retired = false

    /// The frames queued on its streams (`HTTP2FrameGuard`), given to each stream's meter.
    let queues: HTTP2FrameQueues

    init(multiplexer: NIOHTTP2Handler.StreamMultiplexer, channel: any Channel, queues: HTTP2FrameQueues) {
        self.multiplexer = multiplexer
        self.channel = channel
        self.queues = queues
    }

    /// Whether another stream would be sent at once rather than queued by swift-nio-http2 until one
    /// of this connection's streams ends.
    var hasRoom: Bool { channel.isActive && !leaving && openStreams < maxStreams }

    /// Counts a reset the gateway sent on one of its streams; true when that retired it.
    func noteReset(at now: NIODeadline) -> Bool {
        guard !retired, resets.noteReset(at: now) else { return false }
        retired = true
        if openStreams == 0 { channel.close(promise: nil) }
        return true
    }

    /// Retired, or told GOAWAY: it takes no new stream, does not count toward the target's
    /// connections, and closes with its last stream.
    var leaving: Bool { retired || goingAway }

    /// The upstream sent GOAWAY.
    func upstreamGoingAway() {
        goingAway = true
        if openStreams == 0 { channel.close(promise: nil) }
    }

    /// One of its streams closed: a leaving connection closes with its last.
    func streamClosed() {
        openStreams -= 1
        if leaving, openStreams == 0 { channel.close(promise: nil) }
    }
}
