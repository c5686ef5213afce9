import NIOCore
import NIOHTTP2

/// Whether a stream to an HTTP/2 upstream ended unprocessed: refused with RST_STREAM
/// REFUSED_STREAM, or past the last stream of the upstream's GOAWAY. RFC 9113 §8.7: such a
/// request "can be safely retried", whatever its method.
enum HTTP2StreamRefusal {
    /// The stream `channel` failed with `error`, which says it was refused. swift-nio-http2 closes
    /// the streams past a GOAWAY's last stream with CANCEL (its `StreamClosedEvent` documentation
    /// says REFUSED_STREAM), which alone tells them from nothing else: those are found by their
    /// stream ID against the GOAWAY that `HTTP2UpstreamSettingsWatcher`, on the connection, read
    /// before swift-nio-http2 closed them. On the event loop.
    static func refused(_ error: any Error, on channel: any Channel) -> Bool {
        guard let closed = error as? NIOHTTP2Errors.StreamClosed else { return false }
        if closed.errorCode == .refusedStream { return true }
        guard let connection = channel.parent,
              let watcher = try? connection.pipeline.syncOperations.handler(type: HTTP2UpstreamSettingsWatcher.self),
              let last = watcher.goAwayLastStreamID else { return false }
        return closed.streamID > last
    }

    /// A stream's HEADERS write failed with `error`, which says it never left the gateway:
    /// swift-nio-http2 dropped it from its buffers as the stream closed (an upstream's GOAWAY
    /// before the stream could open), or refused to open a stream after the upstream's GOAWAY. Not
    /// any error: over TLS the writes of one flush share a promise, so a connection failing after
    /// the HEADERS went out fails it too.
    static func headersUnsent(_ error: any Error) -> Bool {
        if error is NIOHTTP2Errors.StreamClosed || error is NIOHTTP2Errors.CreatedStreamAfterGoaway { return true }
        if let wrapped = error as? NIOHTTP2Errors.StreamError { return wrapped.baseError is NIOHTTP2Errors.CreatedStreamAfterGoaway }
        return false
    }
}
