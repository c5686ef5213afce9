import NIOCore

/// How many WINDOW_UPDATE frames a peer may send on each stream of a connection
/// (`HTTP2FrameGuard`): 16, plus what the DATA frames the gateway has sent on the stream earn —
/// two a frame and one a KiB in it (`updatesEarned(byDataFrameOf:)`). A peer updates a window as
/// it consumes what it was sent: nghttp2 and curl, browsers, grpc-go and Netty once a fraction of
/// the window is consumed; grpc core as often as once per message read (one DATA frame each for
/// small messages); Go's net/http once per 4 KiB its application reads (`inflowMinRefresh`), four
/// per 16 KiB frame for a body read through a 4 KiB buffer. Credit is per stream and earned only
/// by what the gateway sent on it, so updates cannot be saved up on other streams or
/// connection-wide (as Envoy's connection-wide count of 10 per DATA frame allows), and what a held
/// stream can queue is bounded by what went to the peer on it. A peer that shrinks its window to
/// make the gateway send 1-byte frames still earns two updates per byte it pulls through —
/// bounded, but not small (docs/configuration.md, "HTTP/2").
///
/// Streams are tracked from the HEADERS that open them until both sides have ended them or either
/// reset them; updates on streams not tracked (closed or never opened) are not counted here — no
/// stream channel queues them — but in the connection's `HTTP2ConnectionFrameBudget`, as resets of
/// such streams are. The same tracking tells `HTTP2PrematureResets` when a peer opened a
/// stream and whether the gateway had answered it when it was reset. Event-loop confined, inside
/// the guard.
struct HTTP2WindowUpdateBudget {
    static let allowance = 16
    static let updatesPerFrameSent = 2
    static let bytesPerUpdate = 1024

    /// The WINDOW_UPDATE frames a DATA frame of `length` bytes the gateway sent earns its peer.
    static func updatesEarned(byDataFrameOf length: Int) -> Int {
        updatesPerFrameSent + length / bytesPerUpdate
    }

    private struct Stream {
        var updates = 0
        var earned = HTTP2WindowUpdateBudget.allowance
        var sentEnd = false
        var receivedEnd = false
        /// The gateway sent HEADERS on it (a response head, to a peer that opened it).
        var sentHeaders = false
        /// When the peer opened it, where the guard asked (`HTTP2PrematureResets`).
        var openedAt: NIODeadline?
    }

    /// What became of a peer's WINDOW_UPDATE on a stream.
    enum Update: Equatable {
        /// Within the stream's budget.
        case within
        /// Beyond it: the connection is to be closed.
        case beyond
        /// The stream is not tracked (over, or never opened).
        case untracked
    }

    /// What an RST_STREAM ended.
    enum Reset: Equatable {
        /// A stream not tracked (over, or never opened).
        case untracked
        /// A tracked stream; `unansweredSince` is when the peer opened it if the gateway had sent
        /// no HEADERS on it yet and that time was kept (`HTTP2PrematureResets`), otherwise nil.
        case tracked(unansweredSince: NIODeadline?)
    }

    private var streams: [UInt32: Stream] = [:]

    /// How many streams are tracked.
    var trackedStreams: Int { streams.count }

    /// A HEADERS frame on `stream`, sent by the peer or by the gateway; `now`, if given, is kept
    /// as the time the peer opened it.
    mutating func headers(on stream: UInt32, endStream: Bool, fromPeer: Bool, at now: NIODeadline? = nil) {
        if streams[stream] == nil { streams[stream] = Stream(openedAt: fromPeer ? now : nil) }
        if !fromPeer { streams[stream]?.sentHeaders = true }
        if endStream { ended(stream, fromPeer: fromPeer) }
    }

    /// A DATA frame of `length` bytes on `stream`.
    mutating func data(on stream: UInt32, length: Int, endStream: Bool, fromPeer: Bool) {
        if !fromPeer { streams[stream]?.earned += Self.updatesEarned(byDataFrameOf: length) }
        if endStream { ended(stream, fromPeer: fromPeer) }
    }

    /// An RST_STREAM either way: the stream is over.
    @discardableResult
    mutating func reset(_ stream: UInt32) -> Reset {
        guard let counts = streams.removeValue(forKey: stream) else { return .untracked }
        return .tracked(unansweredSince: counts.sentHeaders ? nil : counts.openedAt)
    }

    /// A WINDOW_UPDATE from the peer on `stream` (not 0).
    mutating func windowUpdate(on stream: UInt32) -> Update {
        guard var counts = streams[stream] else { return .untracked }
        counts.updates += 1
        streams[stream] = counts
        return counts.updates <= counts.earned ? .within : .beyond
    }

    private mutating func ended(_ stream: UInt32, fromPeer: Bool) {
        guard var counts = streams[stream] else { return }
        if fromPeer { counts.receivedEnd = true } else { counts.sentEnd = true }
        streams[stream] = counts.sentEnd && counts.receivedEnd ? nil : counts
    }
}
