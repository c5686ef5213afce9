import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// TLS in front of Hummingbird's HTTP/1.1 channel. Written here rather than taken from
/// HummingbirdTLS because its `TLSChannel` fixes the context when the server starts, and
/// certificates must be reloadable without a restart.
struct ReloadableTLSChannel<Base: HTTPChannelHandler>: HTTPChannelHandler {
    typealias Value = Base.Value
    let base: Base
    let box: ListenerTLSBox

    var responder: HTTPChannelHandler.Responder { base.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let (tls, generation) = box.open(channel)
            try channel.pipeline.syncOperations.addHandlers([tls.makeHandler(), ConnectionTrust(box: box, generation: generation)])
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1, over TLS with `box`'s current context when given; a connection idle for
    /// `idleTimeout` is closed, and one past `cap`'s limit at once.
    static func http1(tls box: ListenerTLSBox?, idleTimeout: Duration, cap: ConnectionCap) -> HTTPServerBuilder {
        let configuration = HTTP1Channel.Configuration(additionalChannelHandlers: [cap.handler()], idleTimeout: TimeAmount(idleTimeout))
        guard let box else { return .http1(configuration: configuration) }
        return .init { responder in
            ReloadableTLSChannel(base: HTTP1Channel(responder: responder, configuration: configuration), box: box)
        }
    }
}
