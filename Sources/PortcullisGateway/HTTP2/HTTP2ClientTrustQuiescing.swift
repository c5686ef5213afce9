import NIOCore
import NIOHTTP2

/// Sits between swift-nio-http2's connection handler and its connection manager: a reload that
/// replaced the client trust the connection opened under, or stopped trusting the proxy it comes
/// from (`ClientTrustReplacedEvent`), makes the
/// manager send GOAWAY and close the connection once its open streams are done, so that its
/// client reconnects under the new trust. Fired past the connection handler, the quiesce reaches
/// no stream: a WebSocket or gRPC call on the connection goes on unless the certificate admitted
/// it (`LiveSessions` ends those), where a drain closes WebSockets with 1001.
final class HTTP2ClientTrustQuiescing: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ClientTrustReplacedEvent {
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
