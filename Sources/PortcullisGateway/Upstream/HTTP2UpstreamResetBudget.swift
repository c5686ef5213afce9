import NIOCore

/// The RST_STREAM frames the gateway has sent on one upstream connection, against the reset
/// limits servers keep against rapid reset (CVE-2023-44487): swift-nio-http2 and Netty close a
/// connection after 200 in 30 s, nghttp2 after a burst of 1 000. The gateway resets an upstream
/// stream for its client — a client that leaves, a body over `max_body_bytes`, a token that
/// ends — so clients could make it trip the server's limit and fail every other client's calls
/// on the shared connection. A connection that has sent `limit` resets within `window` is retired
/// instead: it takes no new stream, and closes once its open ones end. Even if every stream still
/// open on it were then reset (at most 100 while a server allows 100), it stays under 200.
/// Confined to the event loop.
struct HTTP2UpstreamResetBudget {
    static let limit = 50
    static let window = TimeAmount.seconds(30)

    private var resets = HTTP2ResetWindow(window: window, keep: limit)

    /// Counts a reset sent at `now`; true when the connection has now spent its budget.
    mutating func noteReset(at now: NIODeadline) -> Bool {
        resets.note(at: now) >= Self.limit
    }
}
