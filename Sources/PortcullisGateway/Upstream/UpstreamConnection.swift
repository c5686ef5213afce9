import NIOCore
import NIOHTTP1

/// Receives one exchange's response from an upstream connection. Implemented by the request path
/// (`ProxyHandler`); every call arrives on the connection's event loop, which is also the client's.
protocol UpstreamExchangeDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd(keepAlive: Bool)
    /// The connection failed or closed mid-exchange. `responseStarted` tells whether any response byte arrived.
    func upstreamFailed(_ error: UpstreamError, responseStarted: Bool)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(isWritable: Bool)
    /// Whether the client side can take more response bytes; if not, upstream reads pause.
    var clientIsWritable: Bool { get }
}

/// Why an exchange with an upstream failed.
enum UpstreamError: Error, CustomStringConvertible {
    case connectFailed(String)
    case connectTimeout
    case closedBeforeResponse
    case closedMidResponse
    case responseHeaderTimeout
    case idleTimeout
    case protocolError(String)
    case tls(String)

    var description: String {
        switch self {
        case .connectFailed(let why): "connect failed: \(why)"
        case .connectTimeout: "connect timed out"
        case .closedBeforeResponse: "upstream closed the connection before responding"
        case .closedMidResponse: "upstream closed the connection mid-response"
        case .responseHeaderTimeout: "upstream did not send a response head in time"
        case .idleTimeout: "upstream connection idle too long"
        case .protocolError(let why): "invalid response from upstream: \(why)"
        case .tls(let why): "TLS to upstream failed: \(why)"
        }
    }

    /// 504 for timeouts, 502 for everything else.
    var isTimeout: Bool {
        switch self {
        case .connectTimeout, .responseHeaderTimeout, .idleTimeout: true
        default: false
        }
    }

    /// A metric label.
    var kind: String {
        switch self {
        case .connectFailed: "connect_failed"
        case .connectTimeout: "connect_timeout"
        case .closedBeforeResponse: "closed_before_response"
        case .closedMidResponse: "closed_mid_response"
        case .responseHeaderTimeout: "response_header_timeout"
        case .idleTimeout: "idle_timeout"
        case .protocolError: "protocol_error"
        case .tls: "tls"
        }
    }
}

/// The last handler of an upstream channel (after NIO's HTTP client codec). Forwards response parts
/// to the current exchange's delegate and pauses reads while the client cannot take more bytes.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange in progress; nil while the connection sits idle in the pool. Strong, not weak
    /// (see DeadlineTimer on side tables): every way an exchange ends clears it — the response
    /// end, `endExchange` (release or close), a failure, or the channel closing.
    var delegate: (any UpstreamExchangeDelegate)?
    private(set) var responseStarted = false
    private(set) var isClosed = false
    private var pendingRead = false
    private var sawInformational = false
    /// Called when the channel closes while idle, so the pool can forget it. Set once by the
    /// pool; dropped when the channel closes.
    var onIdleClose: (() -> Void)?
    /// No bytes either way for this long ends the exchange (or closes an idle pooled connection).
    /// A lazy deadline rather than NIO's IdleStateHandler, which timestamps every read and write.
    private let idleTimeout: TimeAmount
    private var idleTimer: DeadlineTimer?
    private var context: ChannelHandlerContext?

    init(idleTimeout: TimeAmount) {
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Strong capture: `handlerRemoved` stops the timer, which breaks the cycle (see DeadlineTimer).
        idleTimer = DeadlineTimer(eventLoop: context.eventLoop) { [self] in idleTimedOut() }
        idleTimer?.set(after: idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.stop()
        idleTimer = nil
        self.context = nil
        delegate = nil
        onIdleClose = nil
    }

    private func idleTimedOut() {
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(.idleTimeout, responseStarted: responseStarted)
        }
        context?.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        idleTimer?.set(after: idleTimeout)
        context.write(data, promise: promise)
    }

    func beginExchange(delegate: any UpstreamExchangeDelegate) {
        self.delegate = delegate
        responseStarted = false
    }

    func endExchange() {
        delegate = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        idleTimer?.set(after: idleTimeout)
        let part = unwrapInboundIn(data)
        guard let delegate else {
            // Bytes on an idle pooled connection: the upstream is out of step. Do not reuse it.
            context.close(promise: nil)
            return
        }
        switch part {
        case .head(let head):
            // 1xx (other than 101) are informational: the real head follows. Never forwarded
            // because the gateway answered any `Expect: 100-continue` itself.
            if head.status.code >= 100 && head.status.code < 200 && head.status != .switchingProtocols {
                return
            }
            responseStarted = true
            delegate.upstreamResponseHead(head)
        case .body(let body):
            delegate.upstreamResponseBody(body)
        case .end:
            let keepAlive = !isClosed
            self.delegate = nil
            delegate.upstreamResponseEnd(keepAlive: keepAlive)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let delegate, !delegate.clientIsWritable {
            pendingRead = true
            return
        }
        context.read()
    }

    /// Resumes reading once the client side drained.
    func resumeReading(context: ChannelHandlerContext) {
        if pendingRead {
            pendingRead = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        idleTimer?.stop()
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(responseStarted ? .closedMidResponse : .closedBeforeResponse, responseStarted: responseStarted)
        } else {
            onIdleClose?()
        }
        onIdleClose = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let delegate {
            self.delegate = nil
            let mapped: UpstreamError
            if error is HTTPParserError {
                mapped = .protocolError("\(error)")
            } else if "\(type(of: error))".contains("SSL") {
                mapped = .tls("\(error)")
            } else {
                mapped = responseStarted ? .closedMidResponse : .closedBeforeResponse
            }
            delegate.upstreamFailed(mapped, responseStarted: responseStarted)
        }
        context.close(promise: nil)
    }
}

/// A connection to one upstream target, owned by one event loop's pool.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let context: ChannelHandlerContext
    let target: UpstreamTarget
    let usesTLS: Bool
    /// When it was last returned to the pool.
    var idleSince: NIODeadline = .now()
    /// Exchanges completed on it; 0 means fresh.
    var exchanges = 0

    init(channel: any Channel, handler: UpstreamHandler, context: ChannelHandlerContext, target: UpstreamTarget, usesTLS: Bool) {
        self.channel = channel
        self.handler = handler
        self.context = context
        self.target = target
        self.usesTLS = usesTLS
    }

    var isUsable: Bool { channel.isActive && !handler.isClosed }

    func write(_ part: HTTPClientRequestPart, promise: EventLoopPromise<Void>? = nil) {
        context.write(handler.wrapOutboundOut(part), promise: promise)
    }

    func flush() {
        context.flush()
    }

    func resumeReading() {
        handler.resumeReading(context: context)
    }

    func close() {
        handler.endExchange()
        channel.close(promise: nil)
    }
}
