import NIOHTTP2

/// A connection error found below swift-nio-http2, by `HTTP2FrameGuard`: swift-nio-http2 sent no
/// GOAWAY for it, so `HTTP2ConnectionErrorHandler` does, with `goAwayCode`.
protocol HTTP2GuardConnectionError: Error {
    var goAwayCode: HTTP2ErrorCode { get }
}
