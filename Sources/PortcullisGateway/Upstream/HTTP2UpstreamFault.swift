import PortcullisConfig

/// What an HTTP/2 upstream did wrong, as `HTTP2UpstreamPool` reports it (to count and log).
enum HTTP2UpstreamFault {
    /// An error on the connection to `upstream` closed it; the streams open on it fail.
    case connectionClosed(upstream: HostPort, error: any Error)
    /// One response from `upstream` was malformed (RFC 9113 §8.1.1): its stream was reset and its
    /// call fails; the connection and its other streams go on.
    case malformedResponse(upstream: HostPort, error: any Error)
}
