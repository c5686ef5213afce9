import NIOCore

/// Whether a client is taking what its connection sends, by the bytes its TCP stack has
/// acknowledged (Linux's `TCP_INFO`, `tcpi_bytes_acked`), as the overload guard sees it at its
/// readings. The TCP peer is the nearest: a load balancer in front, if there is one. The channel's writability alone cannot tell: the kernel wakes a writer only once a
/// good part of the socket's send buffer has drained — seconds, for a steady reader behind a
/// buffer of megabytes — so a client downloading steadily looked stalled for that long, and the
/// guard cut it (docs/configuration.md, "Overload").
///
/// The guard counts a response's wait from the later of when the channel stopped taking writes
/// and when it last saw the client acknowledge at least `minimumBytes` more than before. The
/// first reading of a connection is its baseline. Event-loop confined, inside its connection's
/// handler.
struct ClientProgress {
    /// What a client must acknowledge between two sightings of progress to be taking its
    /// response: at the default `overload.response_write_timeout` (2 s), 16 KiB a second. Below
    /// it a client is cut as one taking nothing: a reader that slow holds its connection's
    /// buffers as long as one that has stopped.
    static let minimumBytes: UInt64 = 32 << 10

    private var acknowledged: UInt64
    /// When the guard last saw the client acknowledge `minimumBytes` more (or first saw it).
    private(set) var progressedAt: NIODeadline

    init(acknowledged: UInt64, at now: NIODeadline) {
        self.acknowledged = acknowledged
        self.progressedAt = now
    }

    /// A reading of the client's acknowledged bytes at `now`.
    mutating func observe(acknowledged: UInt64, at now: NIODeadline) {
        guard acknowledged >= self.acknowledged &+ Self.minimumBytes else { return }
        self.acknowledged = acknowledged
        progressedAt = now
    }

    /// The bytes of `channel`'s output its client's TCP stack has acknowledged; nil where the
    /// channel is not a TCP socket (an embedded channel in tests) or the kernel does not say.
    /// One `getsockopt`; on the channel's event loop only.
    static func bytesAcknowledged(by channel: any Channel) -> UInt64? {
        #if os(Linux)
        channel.eventLoop.preconditionInEventLoop()
        guard let socket = channel as? any SocketOptionProvider else { return nil }
        var acknowledged: UInt64?
        // On its event loop the option is read at once and the future is complete when returned,
        // so its callback runs before `whenSuccess` returns.
        let reading: EventLoopFuture<KernelTCPInfo> = socket.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        reading.assumeIsolated().whenSuccess { info in
            // Zero where the kernel's structure is shorter (before Linux 4.1): no reading.
            if info.bytesAcked > 0 { acknowledged = info.bytesAcked }
        }
        return acknowledged
        #else
        return nil
        #endif
    }
}
