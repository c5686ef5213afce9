import NIOCore

/// The handlers that read an HTTP/2 connection's frames before swift-nio-http2 — the frame guard
/// and the DATA frame joiner — for the fuzz harness (`Sources/PortcullisFuzz`,
/// docs/fuzzing.md): the `http2-frames` target runs a connection's bytes through each in reads
/// cut at random and compares what it passes on with a whole-buffer reading. `package` access
/// keeps them out of the public API.
package enum HTTP2FramePath {
    /// A guard as on a client connection (its bytes begin with the connection preface), or as on
    /// a connection to an upstream (they do not), with streams' queues of its own.
    package static func makeGuard(afterPreface: Bool) -> any ChannelHandler {
        HTTP2FrameGuard(role: afterPreface ? .server : .client)
    }

    /// The DATA frame joiner as on a client connection (after the preface) or on one to an upstream.
    package static func makeJoiner(afterPreface: Bool) -> any ChannelHandler {
        HTTP2DataFrameJoiner(prefaceBytes: afterPreface ? 24 : 0)
    }

    /// The longest DATA frame the joiner builds.
    package static var maxJoinedFrameSize: Int { HTTP2DataFrameJoiner.maxFrameSize }

    /// Whether `error` is one the guard raises to end its connection (`HTTP2GuardConnectionError`).
    package static func endsConnection(_ error: any Error) -> Bool {
        error is any HTTP2GuardConnectionError
    }

    /// Frame types the guard drops (`HTTP2FrameGuard.isExtension`).
    package static func drops(type: UInt8) -> Bool {
        HTTP2FrameGuard.isExtension(type)
    }

    /// The largest HPACK table size the guard lets a peer's SETTINGS announce.
    package static var maxHeaderTableSize: UInt32 { HTTP2FrameGuard.maxHeaderTableSize }
}
