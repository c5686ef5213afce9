import NIOCore

/// How many WINDOW_UPDATE frames a peer may send on each stream of a connection
/// (`HTTP2FrameGuard`): 16, plus what the DATA frames the gateway has sent on the stream earn —
/// two a frame and one a KiB in it, or one per 512 bytes for a frame after which the peer's
/// window was spent (`updatesEarned(byDataFrameOf:windowLimited:)`). A peer updates a window as
/// it consumes what it was sent: nghttp2 and curl, browsers, grpc-go and Netty once a fraction of
/// the window is consumed; grpc core as often as once per message read (one DATA frame each for
/// small messages); Go's net/http once per 4 KiB its application reads (`inflowMinRefresh`), four
/// per 16 KiB frame for a body read through a 4 KiB buffer. Credit is per stream and earned only
/// by what the gateway sent on it, so updates cannot be saved up on other streams or
/// connection-wide (as Envoy's connection-wide count of 10 per DATA frame allows), and what a held
/// stream can queue is bounded by what went to the peer on it.
///
/// A frame the peer's window cut short earns no per-frame credit: otherwise a peer keeping its
/// window at a byte, updating it by one for each 1-byte frame it got, would earn two updates for
/// each one it spent and keep a core busy for as long as the response lasted. Such a frame earns
/// by its bytes, one update per 512: Go's net/http, once a window is spent, updates it by what
/// each read of the application took, and a reader taking 512 bytes at a time keeps even; one
/// taking less while the gateway has more to send for it is cut once the credit its earlier
/// frames earned is spent. So the
/// peer's windows are followed as the gateway's sending sees them: each stream's from the peer's
/// SETTINGS_INITIAL_WINDOW_SIZE, its changes applied to open streams (RFC 9113 §6.9.2), plus the
/// increments of its updates, less the DATA sent; the connection's in
/// `HTTP2ConnectionFrameBudget`. A frame after which either is spent was cut short by it.
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
    /// A frame the peer's window cut short earns one update per this many bytes: Go's net/http,
    /// once a window is spent, updates it by what each read of the application took, and a
    /// reader taking 512 bytes at a time (as `encoding/json` does) keeps even.
    static let bytesPerUpdateWindowLimited = 512
    /// A stream's window before the peer's SETTINGS say otherwise (RFC 9113 §6.5.2).
    static let defaultInitialWindow = 65_535

    /// The WINDOW_UPDATE frames a DATA frame of `length` bytes the gateway sent earns its peer:
    /// `updatesPerFrameSent` and one a KiB, or, if the peer's window cut it short, only one per
    /// `bytesPerUpdateWindowLimited` bytes.
    static func updatesEarned(byDataFrameOf length: Int, windowLimited: Bool) -> Int {
        windowLimited ? length / bytesPerUpdateWindowLimited : updatesPerFrameSent + length / bytesPerUpdate
    }

    private struct Stream {
        var updates = 0
        var earned = HTTP2WindowUpdateBudget.allowance
        /// What the peer's window lets the gateway still send on it.
        var window: Int
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
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    private var initialWindow = defaultInitialWindow

    /// How many streams are tracked.
    var trackedStreams: Int { streams.count }

    /// What the peer's window lets the gateway still send on `stream`; nil for a stream not
    /// tracked, or whose end the gateway has sent (nothing of it waits on the window any more).
    func window(of stream: UInt32) -> Int? {
        guard let tracked = streams[stream], !tracked.sentEnd else { return nil }
        return tracked.window
    }

    /// A HEADERS frame on `stream`, sent by the peer or by the gateway; `now`, if given, is kept
    /// as the time the peer opened it.
    mutating func headers(on stream: UInt32, endStream: Bool, fromPeer: Bool, at now: NIODeadline? = nil) {
        if streams[stream] == nil { streams[stream] = Stream(window: initialWindow, openedAt: fromPeer ? now : nil) }
        if !fromPeer { streams[stream]?.sentHeaders = true }
        if endStream { ended(stream, fromPeer: fromPeer) }
    }

    /// The peer's SETTINGS changed SETTINGS_INITIAL_WINDOW_SIZE to `size`: every open stream's
    /// window moves by the difference.
    mutating func peerInitialWindowChanged(to size: Int) {
        let delta = size - initialWindow
        initialWindow = size
        guard delta != 0 else { return }
        for index in streams.indices { streams.values[index].window += delta }
    }

    /// The gateway sent a DATA frame of `length` bytes on `stream`; `connectionWindowSpent` if the
    /// peer's connection window is spent after it. Returns the updates it earned (on the stream,
    /// and the same on the connection: `HTTP2ConnectionFrameBudget`).
    mutating func dataSent(on stream: UInt32, length: Int, endStream: Bool, connectionWindowSpent: Bool) -> Int {
        guard let index = streams.index(forKey: stream) else {
            return Self.updatesEarned(byDataFrameOf: length, windowLimited: connectionWindowSpent)
        }
        streams.values[index].window -= length
        let earned = Self.updatesEarned(byDataFrameOf: length, windowLimited: connectionWindowSpent || streams.values[index].window <= 0)
        streams.values[index].earned += earned
        if endStream { ended(stream, fromPeer: false) }
        return earned
    }

    /// The peer sent a DATA frame on `stream`.
    mutating func dataReceived(on stream: UInt32, endStream: Bool) {
        if endStream { ended(stream, fromPeer: true) }
    }

    /// A WINDOW_UPDATE's increment, read once its payload is whole, on a stream (not 0).
    mutating func windowIncremented(by increment: Int, on stream: UInt32) {
        if let index = streams.index(forKey: stream) { streams.values[index].window += increment }
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
