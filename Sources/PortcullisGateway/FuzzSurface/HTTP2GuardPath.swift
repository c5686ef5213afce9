import NIOCore

/// The HTTP/2 frame guard for the fuzz harness (`Sources/PortcullisFuzz`, docs/fuzzing.md): the
/// `http2-frames` target runs a connection's bytes through it in reads cut at random and compares
/// what it passes on with a whole-buffer reading. `package` access keeps it out of the public API.
package enum HTTP2GuardPath {
    /// A guard as on a client connection (its bytes begin with the connection preface), or as on
    /// a connection to an upstream (they do not), with streams' queues of its own.
    package static func makeGuard(afterPreface: Bool) -> any ChannelHandler {
        HTTP2FrameGuard(role: afterPreface ? .server : .client)
    }

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
