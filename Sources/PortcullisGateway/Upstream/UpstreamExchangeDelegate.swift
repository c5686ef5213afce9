import NIOCore

/// Receives one exchange's response from an upstream connection. Implemented by the request path
/// (`ProxyHandler`); every call arrives on the connection's event loop, which is also the client's.
protocol UpstreamExchangeDelegate: AnyObject {
    func upstreamResponseHead(_ head: UpstreamResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    /// The response ended; `now` is when its last bytes were read.
    func upstreamResponseEnd(keepAlive: Bool, now: NIODeadline)
    /// The connection failed or closed mid-exchange. `responseStarted` tells whether any response byte arrived.
    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    /// Whether the client side can take more response bytes; if not, upstream reads pause.
    var clientIsWritable: Bool { get }
}
