import PortcullisConfig

/// What an HTTP/2 upstream did wrong, as `HTTP2UpstreamPool` reports it (to count and log).
enum HTTP2UpstreamFault {
    /// An error on the connection to `upstream` closed it; the streams open on it fail.
    case connectionClosed(upstream: HostPort, error: any Error)
    /// A stream to `upstream` was reset for a malformed message (RFC 9113 §8.1.1): the upstream's
    /// response, or — the gateway's fault — a request swift-nio-http2 would not send (it reports
    /// both alike); its call fails, the connection and its other streams go on.
    case malformedStream(upstream: HostPort, error: any Error)
}
