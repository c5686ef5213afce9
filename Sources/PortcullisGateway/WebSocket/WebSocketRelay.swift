import NIOCore
import NIOWebSocket

/// One WebSocket after the handshake: frames from the client go to the upstream and back, one
/// frame for one frame (fragmentation, pings and extensions' reserved bits pass as they are),
/// re-masked toward the upstream as RFC 6455 §5.3 requires of a client. Because the gateway sees
/// frame boundaries (NIO's `WebSocketFrameDecoder` on both sides), it can end the WebSocket
/// itself with a close frame: when the token ends (`LiveSessions`, code 1008), after the route's
/// idle timeout or maximum lifetime (1001), or when a frame exceeds `max_frame_bytes` (1009).
///
/// Both channels run on one event loop (the upstream connection is opened on the client's), and
/// so does this object. Backpressure: a side is read only while the other side is writable.
final class WebSocketRelay {
    enum Side {
        case client
        case upstream

        var other: Side { self == .client ? .upstream : .client }
    }

    private var clientContext: ChannelHandlerContext?
    private var upstreamContext: ChannelHandlerContext?
    private let session: LiveSession
    private let idleTimeout: TimeAmount
    private var idleTimer: DeadlineTimer?
    private var lifetimeTimer: Scheduled<Void>?
    private var graceTimer: Scheduled<Void>?
    /// A close frame was written to that side (forwarded or the gateway's own).
    private var closeSentToClient = false
    private var closeSentToUpstream = false
    /// The gateway closed the WebSocket itself: frames still arriving are dropped.
    private var closedByGateway = false
    private var pendingRead: [Side] = []
    /// How long the peers get to answer the gateway's close frame before their connections close.
    static let closeGrace: TimeAmount = .seconds(1)

    init(session: LiveSession, idleTimeout: TimeAmount, maxLifetime: TimeAmount) {
        self.session = session
        self.idleTimeout = idleTimeout
        let loop = session.eventLoop.assumeIsolated()
        // Strong captures: `stop()` (when both sides are gone) cancels them, breaking the cycles.
        idleTimer = DeadlineTimer(eventLoop: session.eventLoop) { [self] in
            close(code: .goingAway, reason: "idle timeout", end: .idleTimeout)
        }
        idleTimer?.set(after: idleTimeout)
        lifetimeTimer = loop.scheduleTask(in: maxLifetime) { [self] in
            close(code: .goingAway, reason: "maximum lifetime reached", end: .maxLifetime)
        }
    }

    /// The session's way to end it when its token ends.
    func tokenEnded(_ end: LiveSessions.TokenEnd) {
        close(code: .policyViolation, reason: end.message, end: end.reason)
    }

    // MARK: From the side handlers

    func attach(_ side: Side, context: ChannelHandlerContext) {
        switch side {
        case .client: clientContext = context
        case .upstream: upstreamContext = context
        }
    }

    func received(_ frame: WebSocketFrame, from side: Side) {
        guard !closedByGateway else {
            // The peer's answer to the gateway's close frame: its connection may go now.
            if frame.opcode == .connectionClose { context(side)?.close(promise: nil) }
            return
        }
        idleTimer?.set(after: idleTimeout)
        if frame.opcode == .connectionClose { session.end(side == .client ? .client : .upstream) }
        let forwarded: WebSocketFrame
        switch side {
        case .client:
            forwarded = WebSocketFrame(fin: frame.fin, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3, opcode: frame.opcode,
                                       maskKey: .random(), data: frame.unmaskedData, extensionData: frame.unmaskedExtensionData)
        case .upstream:
            // A server's frames are unmasked; one that masks anyway is unmasked for the client.
            forwarded = WebSocketFrame(fin: frame.fin, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3, opcode: frame.opcode,
                                       data: frame.unmaskedData, extensionData: frame.unmaskedExtensionData)
        }
        if frame.opcode == .connectionClose { markCloseSent(to: side.other) }
        context(side.other)?.write(NIOAny(forwarded), promise: nil)
    }

    func readComplete(from side: Side) {
        context(side.other)?.flush()
    }

    /// `side`'s connection closed: the other side gets a close frame if it has had none, and
    /// its connection closes once that is written.
    func inactive(_ side: Side) {
        session.end(side == .client ? .client : .upstream)
        switch side {
        case .client: clientContext = nil
        case .upstream: upstreamContext = nil
        }
        guard let other = context(side.other) else { return stop() }
        let written = other.eventLoop.makePromise(of: Void.self)
        if closeSent(to: side.other) {
            written.succeed()
        } else {
            markCloseSent(to: side.other)
            other.write(NIOAny(closeFrame(code: .goingAway, reason: side == .client ? "client gone" : "upstream gone", to: side.other,
                                          allocator: other.channel.allocator)), promise: written)
        }
        other.flush()
        written.futureResult.assumeIsolated().whenComplete { _ in other.close(promise: nil) }
    }

    /// A side's decoder refused its bytes: a frame over `max_frame_bytes` (1009) or a protocol
    /// error (1002).
    func failed(_ side: Side, error: any Error) {
        if let error = error as? NIOWebSocketError, error == .invalidFrameLength {
            close(code: .messageTooLarge, reason: "frame too large", end: .tooLarge)
        } else {
            close(code: .protocolError, reason: "protocol error", end: .protocolError)
        }
    }

    func mayRead(_ side: Side) -> Bool {
        context(side.other)?.channel.isWritable ?? true
    }

    func holdRead(_ side: Side) {
        if !pendingRead.contains(side) { pendingRead.append(side) }
    }

    func writabilityChanged(_ side: Side) {
        guard let context = context(side), context.channel.isWritable, pendingRead.contains(side.other) else { return }
        pendingRead.removeAll { $0 == side.other }
        self.context(side.other)?.read()
    }

    // MARK: Closing

    /// Ends the WebSocket from the gateway: a close frame with `code` and `reason` to both peers,
    /// then each connection closes when its peer answers, or after `closeGrace`.
    func close(code: WebSocketErrorCode, reason: String, end: LiveSessions.EndReason) {
        guard !closedByGateway else { return }
        closedByGateway = true
        session.end(end)
        idleTimer?.cancel()
        for side in [Side.client, .upstream] {
            guard let context = context(side) else { continue }
            if closeSent(to: side) {
                context.flush()
            } else {
                markCloseSent(to: side)
                context.writeAndFlush(NIOAny(closeFrame(code: code, reason: reason, to: side, allocator: context.channel.allocator)), promise: nil)
            }
        }
        graceTimer = session.eventLoop.assumeIsolated().scheduleTask(in: Self.closeGrace) { [self] in
            clientContext?.close(promise: nil)
            upstreamContext?.close(promise: nil)
        }
    }

    private func stop() {
        idleTimer?.stop()
        idleTimer = nil
        lifetimeTimer?.cancel()
        lifetimeTimer = nil
        graceTimer?.cancel()
        graceTimer = nil
    }

    private func context(_ side: Side) -> ChannelHandlerContext? {
        side == .client ? clientContext : upstreamContext
    }

    private func closeSent(to side: Side) -> Bool {
        side == .client ? closeSentToClient : closeSentToUpstream
    }

    private func markCloseSent(to side: Side) {
        if side == .client { closeSentToClient = true } else { closeSentToUpstream = true }
    }

    private func closeFrame(code: WebSocketErrorCode, reason: String, to side: Side, allocator: ByteBufferAllocator) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        return WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: side == .upstream ? .random() : nil, data: data)
    }
}
