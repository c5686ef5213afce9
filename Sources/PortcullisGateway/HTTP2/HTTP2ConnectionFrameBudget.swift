import NIOHTTP2

/// How many frames a peer may send that no open stream accounts for (`HTTP2FrameGuard`):
/// WINDOW_UPDATE on the connection (stream 0), WINDOW_UPDATE and RST_STREAM on streams that are
/// over (`HTTP2WindowUpdateBudget` tracks no stream for them), GOAWAY, and extension frames (types
/// above CONTINUATION, which the guard drops: a browser's PRIORITY_UPDATE per stream, an
/// upstream's ALTSVC or ORIGIN). swift-nio-http2 limits
/// none of the updates or GOAWAY frames (a peer may repeat a GOAWAY whose last stream does not
/// rise), and these resets only by its count of every RST_STREAM (the backstop,
/// `HTTP2ResetFrameBackstop`); its other counts cover PING, SETTINGS and PRIORITY frames. So a
/// peer could keep a core busy with them for as long as its connection lived, and use them to
/// keep its small DATA frames apart (`HTTP2DataFrameJoiner` joins only frames in a row).
///
/// A peer sends them in the ordinary course as the connection carries work: a connection-level
/// update as it consumes DATA (nghttp2, browsers and grpc once a fraction of the window is
/// consumed, Go's net/http once per 4 KiB read, grpc-go also after its BDP pings, Go and Netty
/// once as a stream closes), and an update or a reset of a stream that ended on the other side
/// meanwhile (Go's stream-level updates for a body read after its end; a gRPC client's reset of a
/// call the gateway ended with RST_STREAM NO_ERROR); a GOAWAY or two as it shuts down. So the
/// budget is earned by that work, as Envoy earns connection-level updates by DATA frames sent:
/// `allowance`, plus what each DATA frame the gateway sent on the connection earns (as on a stream:
/// `HTTP2WindowUpdateBudget.updatesEarned(byDataFrameOf:windowLimited:)`: two a frame and one a
/// KiB, or one per 512 bytes for a frame after which a window of the peer's was spent — so the
/// connection's window, which no SETTINGS changes, is followed here) and `perStreamOpened` for
/// each stream opened on it. One frame beyond it ends the connection with
/// GOAWAY ENHANCE_YOUR_CALM (`Flood`). The count is over the connection's lifetime, like the
/// credit: credit a peer saves up by downloading is bounded by what it downloaded. Event-loop
/// confined, inside the guard.
struct HTTP2ConnectionFrameBudget {
    static let allowance = 100
    static let perStreamOpened = 4

    /// The connection error it raises; `HTTP2ConnectionErrorHandler` answers it with GOAWAY.
    struct Flood: HTTP2GuardConnectionError, CustomStringConvertible {
        var goAwayCode: HTTP2ErrorCode { .enhanceYourCalm }
        var description: String {
            "connection-level flood: more WINDOW_UPDATE frames on the connection, WINDOW_UPDATE or RST_STREAM frames on closed streams, GOAWAY frames and extension frames than the DATA sent and streams opened on it allow"
        }
    }

    private var spent = 0
    private var earned = allowance
    /// What the peer's connection window lets the gateway still send (RFC 9113 §6.9.2: 65 535 at
    /// first, whatever the SETTINGS).
    private(set) var window = 65_535
    /// The highest stream ID a HEADERS frame was seen on.
    private var highestStream: UInt32 = 0

    /// A HEADERS frame on `stream`, either way. One on a stream ID above every one before opens a
    /// stream — the peer's on a client connection, the gateway's on one to an upstream (it takes
    /// no pushed streams) — and earns credit; a response's or trailers' HEADERS, or a peer's
    /// HEADERS on a stream already over, do not.
    mutating func headers(on stream: UInt32) {
        guard stream > highestStream else { return }
        highestStream = stream
        earned += Self.perStreamOpened
    }

    /// The gateway sent a DATA frame of `length` bytes on the connection; returns whether the
    /// peer's connection window is spent after it.
    mutating func dataFrameSent(length: Int) -> Bool {
        window -= length
        return window <= 0
    }

    /// What a DATA frame the gateway sent earned (`HTTP2WindowUpdateBudget.dataSent`).
    mutating func earn(_ updates: Int) {
        earned += updates
    }

    /// A connection-level WINDOW_UPDATE's increment, read once its payload is whole.
    mutating func windowIncremented(by increment: Int) {
        window += increment
    }

    /// One frame from the peer that no open stream accounts for; false when it is beyond the budget.
    mutating func spend() -> Bool {
        spent += 1
        return spent <= earned
    }
}
