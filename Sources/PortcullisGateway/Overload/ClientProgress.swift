import NIOCore

/// Whether a client is taking what its connection sends, by the bytes its TCP stack has
/// acknowledged (Linux's `TCP_INFO`, `tcpi_bytes_acked`), as the overload guard sees it at its
/// readings. The channel's writability alone cannot tell: the kernel wakes a writer only once a
/// good part of the socket's send buffer has drained — seconds, for a steady reader behind a
/// buffer of megabytes — so a client downloading steadily would look stalled for that long, and
/// the guard would cut it (docs/configuration.md, "Overload"). The TCP peer is the nearest one:
/// a load balancer in front, if there is one.
///
/// A client progresses when, since the guard last saw it progress, it has acknowledged at least
/// what the gateway then held unsent for it (the channel's buffered bytes), and at least
/// `minimumBytes`: every byte the gateway holds is taken within the allowed wait. Acknowledging
/// less — trickling, a few KiB a second — leaves the gateway holding its buffers as long as a
/// client that has stopped, so enough trickling connections could keep a node overloaded.
/// The guard counts a response's wait from the later of when the channel stopped taking writes
/// and when it last saw the client progress; the first reading of a connection is its baseline.
/// Event-loop confined, inside its connection's handler.
struct ClientProgress {
    /// The least a client must acknowledge between two sightings of progress.
    static let minimumBytes: UInt64 = 32 << 10

    /// What the guard read of a connection: the bytes its client acknowledged, and those the
    /// gateway holds unsent for it.
    struct Reading: Equatable {
        var acknowledged: UInt64
        var held: UInt64
    }

    private var acknowledged: UInt64
    /// What the client must acknowledge beyond `acknowledged` to progress.
    private var owed: UInt64
    /// When the guard last saw the client progress (or first saw it).
    private(set) var progressedAt: NIODeadline

    init(_ reading: Reading, at now: NIODeadline) {
        acknowledged = reading.acknowledged
        owed = max(Self.minimumBytes, reading.held)
        progressedAt = now
    }

    /// A reading at `now`.
    mutating func observe(_ reading: Reading, at now: NIODeadline) {
        guard reading.acknowledged >= acknowledged &+ owed else { return }
        acknowledged = reading.acknowledged
        owed = max(Self.minimumBytes, reading.held)
        progressedAt = now
    }

    /// What `channel`'s client has acknowledged and what the gateway holds unsent for it; nil
    /// where the channel is not a TCP socket (an embedded channel in tests) or the kernel does not
    /// say. One `getsockopt`; on the channel's event loop only.
    static func reading(of channel: any Channel) -> Reading? {
        #if os(Linux)
        channel.eventLoop.preconditionInEventLoop()
        guard let socket = channel as? any SocketOptionProvider,
              let held = try? channel.syncOptions?.getOption(.bufferedWritableBytes) else { return nil }
        var acknowledged: UInt64?
        // On its event loop the option is read at once and the future is complete when returned,
        // so its callback runs before `whenSuccess` returns.
        let info: EventLoopFuture<KernelTCPInfo> = socket.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        info.assumeIsolated().whenSuccess { info in
            // Zero where the kernel's structure is shorter (before Linux 4.1): no reading.
            if info.bytesAcked > 0 { acknowledged = info.bytesAcked }
        }
        return acknowledged.map { Reading(acknowledged: $0, held: UInt64(max(0, held))) }
        #else
        return nil
        #endif
    }
}
