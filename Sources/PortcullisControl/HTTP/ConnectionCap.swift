import NIOCore
import Synchronization

/// Bounds one listener's open connections (`limits.max_connections`): a connection past the
/// limit is closed as it comes, so clients holding connections open cannot take the process's
/// file descriptors — which its Redis link needs too. Hummingbird's server has no such bound.
final class ConnectionCap: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// A handler for one new connection's pipeline, which counts it (until it closes) and closes
    /// it when it is over the limit.
    func handler() -> Handler {
        Handler(cap: self)
    }

    /// Passes everything on; only counts and, over the limit, closes.
    final class Handler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = Any
        private let cap: ConnectionCap

        init(cap: ConnectionCap) {
            self.cap = cap
        }

        func handlerAdded(context: ChannelHandlerContext) {
            let open = cap.open.wrappingAdd(1, ordering: .relaxed).newValue
            context.channel.closeFuture.whenComplete { [cap] _ in cap.open.wrappingSubtract(1, ordering: .relaxed) }
            if open > cap.limit { context.close(promise: nil) }
        }
    }
}
