import NIOCore
import NIOHTTP2

extension NIOHTTP2Handler.StreamResetFrameRateLimitConfiguration {
    /// swift-nio-http2's count of every RST_STREAM frame a peer sends, kept only as a backstop
    /// against a flood of frames: 200 within 10 ms, 20 000 a second, which no peer reaches in
    /// its ordinary course (its default, 200 in 30 s, closed clients' and upstreams' connections
    /// in theirs: `HTTP2PrematureResets`, `HTTP2UpstreamPool`). A short window rather than a
    /// large count: swift-nio-http2 reserves a timestamp per frame of the count on each connection.
    static var backstop: Self {
        var limit = Self()
        limit.maximumCount = 200
        limit.windowLength = .milliseconds(10)
        return limit
    }
}
