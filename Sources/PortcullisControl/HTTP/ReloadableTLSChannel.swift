import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The TLS context a listener hands to new connections, replaced on SIGHUP; connections already
/// open keep the one they started with.
final class TLSContextBox: Sendable {
    private let context: Mutex<NIOSSLContext>

    init(_ context: NIOSSLContext) {
        self.context = Mutex(context)
    }

    var current: NIOSSLContext { context.withLock { $0 } }

    func replace(_ new: NIOSSLContext) {
        context.withLock { $0 = new }
    }
}

/// TLS in front of Hummingbird's HTTP/1.1 channel. Written here rather than taken from
/// HummingbirdTLS because its `TLSChannel` fixes the context when the server starts, and
/// certificates must be reloadable without a restart.
struct ReloadableTLSChannel<Base: HTTPChannelHandler>: HTTPChannelHandler {
    typealias Value = Base.Value
    let base: Base
    let box: TLSContextBox

    var responder: HTTPChannelHandler.Responder { base.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: box.current))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1, over TLS with `box`'s current context when given.
    static func http1(tls box: TLSContextBox?) -> HTTPServerBuilder {
        guard let box else { return .http1() }
        return .init { responder in
            ReloadableTLSChannel(base: HTTP1Channel(responder: responder), box: box)
        }
    }
}
