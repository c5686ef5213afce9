import NIOCore

/// What an `UpstreamExchange` needs from the side that carries the client's request — an
/// HTTP/1.1 connection (`ProxyHandler`) — and the only way it talks to it. The downstream frames
/// responses in its own protocol, records the request (metrics, access log) when the exchange
/// ends, and decides what becomes of the client connection. Called on the downstream's event loop.
protocol ExchangeDownstream: AnyObject {
    /// The upstream connection pool of the downstream's event loop.
    var upstreamPool: UpstreamPool { get }
    var metrics: GatewayMetrics { get }
    /// Whether the client takes more response bytes now; upstream reads pause while it does not.
    var isWritable: Bool { get }

    /// The upstream's response head must arrive within `after` (the request was sent).
    func armResponseHeaderTimeout(after: TimeAmount)
    func cancelResponseHeaderTimeout()
    /// An upstream connection can take request bytes again: client reads held back may resume.
    func resumeRequestReads()

    /// The upstream's response head, for the client in the downstream's protocol; false when it
    /// cannot be given to this client (an HTTP/2 header block over one frame), nothing written.
    func sendResponseHead(_ head: UpstreamResponseHead, of exchange: UpstreamExchange) -> Bool
    func sendResponseBody(_ body: ByteBuffer)
    func flushResponse()
    /// Drops the response begun for the client when none of it has been written to the channel
    /// yet (its head still held back), so that an error response can take its place; false when
    /// some of it has left, or the protocol cannot take a head back.
    func retractUnsentResponse() -> Bool

    /// The upstream's response ended at `now`: the exchange is done. `upstreamTime` is from
    /// sending the request to the end of the response.
    func exchangeCompleted(_ exchange: UpstreamExchange, upstreamTime: TimeAmount?, now: NIODeadline)
    /// The exchange failed before any response was sent: the downstream answers `response`.
    func exchangeFailed(_ exchange: UpstreamExchange, with response: ErrorResponse)
    /// The exchange ended with nothing more to send: a response cut short, or a client gone. The
    /// request is recorded and the client's connection (or stream) is cut.
    func exchangeAborted(_ exchange: UpstreamExchange)
    /// Cuts the client's connection (or stream) without recording anything: the exchange was
    /// recorded already, and the client is misbehaving after it.
    func closeDownstream()
}
