import NIOCore

/// Whether a client is taking what its connection sends, by the bytes its TCP stack has
/// acknowledged (Linux's `TCP_INFO`, `tcpi_bytes_acked`), as the overload guard sees it at its
/// readings. The channel's writability alone cannot tell: the kernel wakes a writer only once a
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
    /// response: at the default `overload.response_write_timeout` (2 s), 2 KiB a second.
    static let minimumBytes: UInt64 = 4096

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
    }
}

/// The start of Linux's `struct tcp_info` (`linux/tcp.h`, whose layout only ever grows at its
/// end), through `tcpi_bytes_acked`, padded beyond the whole structure: glibc's `tcp_info`
/// (netinet/tcp.h), which NIO's `getTCPInfo()` returns, stops before that field. NIO zeroes the
/// storage before `getsockopt` fills what the kernel has.
struct KernelTCPInfo: Sendable {
    /// tcpi_state … tcpi_total_retrans: 8 one-byte fields and 24 four-byte ones.
    private var head: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    /// tcpi_pacing_rate, tcpi_max_pacing_rate.
    private var pacing: (UInt64, UInt64)
    /// tcpi_bytes_acked (Linux 4.1).
    private(set) var bytesAcked: UInt64
    /// The rest of the kernel's structure and room for what later kernels add.
    private var rest: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                       UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
}
