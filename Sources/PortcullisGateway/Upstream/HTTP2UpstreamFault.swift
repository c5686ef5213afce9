import PortcullisConfig

/// What befell an HTTP/2 upstream connection, as `HTTP2UpstreamPool` reports it (to count, and
/// most of it to log).
enum HTTP2UpstreamFault {
    /// An error on the connection to `upstream` closed it; the streams open on it fail.
    case connectionClosed(upstream: HostPort, error: any Error)
    /// A stream to `upstream` was reset for a malformed message (RFC 9113 §8.1.1): the upstream's
    /// response, or — the gateway's fault — a request swift-nio-http2 would not send (it reports
    /// both alike); its call fails, the connection and its other streams go on.
    case malformedStream(upstream: HostPort, error: any Error)
    /// A stream to `upstream` was reset (ENHANCE_YOUR_CALM) because its connection held more frames
    /// not yet read than `HTTP2FrameQueues` allows and it held the most: its call fails, the
    /// connection and its other streams go on.
    case streamShed(upstream: HostPort)
    /// A connection to `upstream` spent its budget of resets (`HTTP2UpstreamResetBudget`): it
    /// takes no new stream and closes once its streams end. Not the upstream's fault: its clients'.
    case connectionRetired(upstream: HostPort)
    /// `count` of the upstream's small DATA frames were joined with others of their stream
    /// (`HTTP2DataFrameJoiner`): counted, not logged.
    case dataFramesJoined(upstream: HostPort, count: Int)
}
