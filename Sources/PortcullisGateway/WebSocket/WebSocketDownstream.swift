import NIOCore

/// The client connection's side of a WebSocket handshake: what `WebSocketUpgrade` needs from
/// the HTTP/1.1 handler that admitted the upgrade request.
protocol WebSocketDownstream: AnyObject {
    /// Whether the client is still connected (it may leave during the handshake).
    var webSocketClientConnected: Bool { get }
    /// The handshake failed before the upstream answered: answer `response` and close.
    func webSocketFailed(_ response: ErrorResponse, log: RequestLog, route: CompiledRoute)
    /// The upstream answered other than 101: pass its response on and close.
    func webSocketRefused(_ head: ClientResponseHead, body: ByteBuffer, log: RequestLog, route: CompiledRoute)
    /// Whether the client's connection can carry `head`: an HTTP/2 stream takes a head that fits
    /// one HEADERS frame (`HTTP2HeaderBlockSize`), an HTTP/1.1 connection any the decoder read.
    func webSocketCanCarry(_ head: ClientResponseHead) -> Bool
    /// The upstream answered 101: write `head`, then let `install` take the connection over
    /// (it adds the frame handlers after the HTTP/1.1 ones, which are then removed).
    func webSocketAccepted(_ head: ClientResponseHead, log: RequestLog, route: CompiledRoute,
                           install: (ChannelPipeline.SynchronousOperations) throws -> Void)
}
