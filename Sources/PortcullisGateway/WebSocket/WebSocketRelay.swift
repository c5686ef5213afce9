import NIOCore
import NIOWebSocket

/// One WebSocket after the handshake: the bytes each peer sends are passed to the other as they
/// arrive, unchanged — the client's masked frames keep their masking keys, which stay valid for
/// the upstream (RFC 6455 lets an intermediary pass frames on as they are), and nothing is
/// unmasked, copied into frames or re-encoded. A `WebSocketFrameTracker` per direction reads
/// only each frame's header, so the gateway still:
///
/// - refuses a frame over `max_frame_bytes` (1009) or one breaking the rules the tracker checks
///   (1002) before any of it is passed on: a header is passed on only once it is complete;
/// - sees close frames either way (the session's end reason, and which peer has had one);
/// - ends the WebSocket itself at a frame boundary: when the token ends (`LiveSessions`, 1008),
///   after the route's idle timeout or maximum lifetime (1001), on drain (1001). While a frame is
///   in flight toward a peer, the rest of that frame is passed on first and the gateway's close
///   frame follows its last byte.
///
/// Both channels run on one event loop (the upstream connection is opened on the client's), and
/// so does this object. Backpressure: a side is read only while the other side is writable and
/// not too much of what it sent is held; small pieces toward a side that is behind are joined
/// (`SmallWrites`), so a peer pacing 1-byte pieces does not make each wait as a write.
final class WebSocketRelay {
    enum Side {
        case client
        case upstream

        var other: Side { self == .client ? .upstream : .client }
    }

    /// The bytes one side sends, on their way to the other side.
    private final class Inbound {
        var tracker: WebSocketFrameTracker
        /// The start of a header not complete yet, held back until it is (and checked).
        var heldHeader: ByteBuffer?
        /// The gateway's close frame for the other side, written after the frame in flight ends.
        var closeAfterFrame: ByteBuffer?
        /// Nothing more from this side is passed on (the gateway's close frame went the other way,
        /// or this side broke the protocol).
        var stopped = false
        /// The writes of these bytes to the other side, joined while it is behind (`SmallWrites`).
        var writes = SmallWrites()

        init(sender: WebSocketFrameTracker.Sender, maxPayload: Int) {
            tracker = WebSocketFrameTracker(sender: sender, maxPayload: UInt64(maxPayload))
        }

        /// Whether the other side has part of a frame from this side (so a frame of the
        /// gateway's cannot follow yet).
        var midFrame: Bool { !stopped && tracker.currentFrame != nil }
    }

    private var clientContext: ChannelHandlerContext?
    private var upstreamContext: ChannelHandlerContext?
    private let fromClient: Inbound
    private let fromUpstream: Inbound
    private let session: LiveSession
    private let idleTimeout: TimeAmount
    private var idleTimer: DeadlineTimer?
    private var lifetimeTimer: Scheduled<Void>?
    private var graceTimer: Scheduled<Void>?
    /// Set when a peer's close frame begins: both connections close when it fires.
    private var closeHandshakeTimer: Scheduled<Void>?
    /// Which peer sent the first close frame: the session's end reason once a connection closes,
    /// unless the gateway closed the WebSocket first. The session stays open, and its token
    /// watched, until then.
    private var closedBy: LiveSessions.EndReason?
    /// A close frame was written to that side (passed on or the gateway's own), or is due after
    /// the frame in flight.
    private var closeSentToClient = false
    private var closeSentToUpstream = false
    /// The gateway closed the WebSocket itself.
    private var closedByGateway = false
    private var pendingRead: [Side] = []
    /// How long the peers get to answer the gateway's close frame before their connections close.
    static let closeGrace: TimeAmount = .seconds(1)
    /// How long the close handshake a peer begins may take before both connections close: the
    /// other peer may finish the message it is sending first (RFC 6455 §5.5.1), but a peer that
    /// sends a close frame's header and never its payload does not keep the WebSocket open.
    static let closeHandshakeTimeout: TimeAmount = .seconds(5)

    init(session: LiveSession, idleTimeout: TimeAmount, maxLifetime: TimeAmount, maxFrameBytes: Int) {
        self.session = session
        self.idleTimeout = idleTimeout
        fromClient = Inbound(sender: .client, maxPayload: maxFrameBytes)
        fromUpstream = Inbound(sender: .server, maxPayload: maxFrameBytes)
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

    /// Bytes `side` sent: passed on up to the last complete header (a header's start is held
    /// back until the rest arrives), and cut where the gateway must stop them.
    func received(_ buffer: ByteBuffer, from side: Side) {
        let inbound = self.inbound(side)
        if !closedByGateway { idleTimer?.set(after: idleTimeout) }
        let total = buffer.readableBytes
        var passed = 0  // bytes of `buffer` passed on or dropped
        var offset = 0  // bytes of `buffer` the tracker has read
        var frameStart: Int?  // where the frame being read starts in `buffer` (nil: before it)
        while true {
            if inbound.tracker.atBoundary { frameStart = offset }
            let advanced = buffer.withUnsafeReadableBytes { bytes in
                Result { () throws(WebSocketFrameViolation) in try inbound.tracker.advance(UnsafeRawBufferPointer(rebasing: bytes[offset...])) }
            }
            let step: (consumed: Int, event: WebSocketFrameTracker.Event?)
            switch advanced {
            case .success(let advance):
                step = advance
            case .failure(let violation):
                // The bytes before the offending frame's header are whole frames.
                if let frameStart { pass(buffer, passed..<frameStart, from: side) }
                inbound.heldHeader = nil
                inbound.stopped = true
                return refused(violation)
            }
            offset += step.consumed
            guard let event = step.event else { break }
            switch event {
            case .header(let header):
                guard header.opcode == WebSocketFrameHeader.close else { continue }
                guard !closedByGateway else {
                    // The peer's answer to the gateway's close frame: its connection may go now.
                    inbound.stopped = true
                    context(side)?.close(promise: nil)
                    return
                }
                // The session ends when a connection does: until then a token's end still closes
                // both (a close frame begun and never finished must not end the watch).
                if closedBy == nil { closedBy = side == .client ? .client : .upstream }
                markCloseSent(to: side.other)
                if closeHandshakeTimer == nil {
                    closeHandshakeTimer = session.eventLoop.assumeIsolated().scheduleTask(in: Self.closeHandshakeTimeout) { [self] in
                        clientContext?.close(promise: nil)
                        upstreamContext?.close(promise: nil)
                    }
                }
            case .frameEnd:
                guard let close = inbound.closeAfterFrame, !inbound.stopped else { continue }
                pass(buffer, passed..<offset, from: side)
                passed = offset
                inbound.closeAfterFrame = nil
                inbound.stopped = true
                writeOwnFrame(close, to: side.other)
                context(side.other)?.flush()
            }
        }
        if inbound.tracker.inHeader {
            if let frameStart {
                pass(buffer, passed..<frameStart, from: side)
                if !inbound.stopped { inbound.heldHeader = buffer.getSlice(at: buffer.readerIndex + frameStart, length: total - frameStart) }
            } else if !inbound.stopped {
                // The header began in an earlier read: its bytes so far (at most 14) are joined.
                var rest = buffer.getSlice(at: buffer.readerIndex + passed, length: total - passed)!
                inbound.heldHeader?.writeBuffer(&rest)
            }
        } else {
            pass(buffer, passed..<total, from: side)
        }
    }

    func readComplete(from side: Side) {
        context(side.other)?.flush()
    }

    /// `side`'s connection closed: the other side gets a close frame if it has had none, and
    /// its connection closes once that is written. If it has part of a frame, no close frame can
    /// follow: its connection just closes.
    func inactive(_ side: Side) {
        session.end(closedBy ?? (side == .client ? .client : .upstream))
        switch side {
        case .client: clientContext = nil
        case .upstream: upstreamContext = nil
        }
        guard let other = context(side.other) else { return stop() }
        let inbound = self.inbound(side)
        let written = other.eventLoop.makePromise(of: Void.self)
        if closeSent(to: side.other) || inbound.midFrame {
            if let held = inbound.writes.drain() { other.write(NIOAny(held), promise: nil) }
            written.succeed()
        } else {
            markCloseSent(to: side.other)
            writeOwnFrame(WebSocketCloseFrame.encode(code: .goingAway, reason: side == .client ? "client gone" : "upstream gone",
                                                     masked: side.other == .upstream, allocator: other.channel.allocator),
                          to: side.other, promise: written)
        }
        inbound.stopped = true
        inbound.heldHeader = nil
        inbound.closeAfterFrame = nil
        other.flush()
        written.futureResult.assumeIsolated().whenComplete { _ in other.close(promise: nil) }
    }

    func mayRead(_ side: Side) -> Bool {
        (context(side.other)?.channel.isWritable ?? true) && !inbound(side).writes.holdsTooMuch
    }

    func holdRead(_ side: Side) {
        if !pendingRead.contains(side) { pendingRead.append(side) }
    }

    func writabilityChanged(_ side: Side) {
        guard pendingRead.contains(side.other), mayRead(side.other) else { return }
        pendingRead.removeAll { $0 == side.other }
        self.context(side.other)?.read()
    }

    // MARK: Closing

    /// Ends the WebSocket from the gateway: a close frame with `code` and `reason` to both peers
    /// (each after the frame in flight toward it, if any), then each connection closes when its
    /// peer answers, or after `closeGrace`.
    func close(code: WebSocketErrorCode, reason: String, end: LiveSessions.EndReason) {
        guard !closedByGateway else { return }
        closedByGateway = true
        session.end(end)
        idleTimer?.cancel()
        for side in [Side.client, .upstream] {
            guard let context = context(side) else { continue }
            // What flows toward `side` comes from the other side.
            let toward = inbound(side.other)
            if closeSent(to: side) {
                context.flush()
                continue
            }
            markCloseSent(to: side)
            let frame = WebSocketCloseFrame.encode(code: code, reason: reason, masked: side == .upstream, allocator: context.channel.allocator)
            if toward.midFrame {
                toward.closeAfterFrame = frame
                context.flush()
            } else {
                toward.stopped = true
                toward.heldHeader = nil
                writeOwnFrame(frame, to: side)
                context.flush()
            }
        }
        graceTimer = session.eventLoop.assumeIsolated().scheduleTask(in: Self.closeGrace) { [self] in
            clientContext?.close(promise: nil)
            upstreamContext?.close(promise: nil)
        }
    }

    /// A side sent a frame the tracker refuses: over `max_frame_bytes` (1009) or breaking the
    /// protocol (1002).
    private func refused(_ violation: WebSocketFrameViolation) {
        if case .frameTooLarge = violation {
            close(code: .messageTooLarge, reason: "frame too large", end: .tooLarge)
        } else {
            close(code: .protocolError, reason: "protocol error", end: .protocolError)
        }
    }

    /// Passes `range` of `buffer` (after any held header bytes) from `side` to the other side,
    /// unless that direction is stopped.
    private func pass(_ buffer: ByteBuffer, _ range: Range<Int>, from side: Side) {
        let inbound = self.inbound(side)
        guard !inbound.stopped, let target = context(side.other) else {
            inbound.heldHeader = nil
            return
        }
        if let held = inbound.heldHeader {
            inbound.heldHeader = nil
            write(held, from: side, to: target)
        }
        guard !range.isEmpty else { return }
        if range.count == buffer.readableBytes {
            write(buffer, from: side, to: target)
        } else {
            write(buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count)!, from: side, to: target)
        }
    }

    /// Writes bytes `side` sent to the other side, or holds them while it is behind.
    private func write(_ bytes: ByteBuffer, from side: Side, to target: ChannelHandlerContext) {
        switch inbound(side).writes.take(bytes, allocator: target.channel.allocator) {
        case .write(let bytes, watched: false):
            target.write(NIOAny(bytes), promise: nil)
        case .write(let bytes, watched: true):
            target.write(NIOAny(bytes), promise: watchedWritePromise(from: side, on: target))
        case .held:
            break
        }
    }

    /// A promise for a watched write of `side`'s bytes: when the other side took it, what was held
    /// meanwhile goes, and `side` is read again if holding had stopped it.
    private func watchedWritePromise(from side: Side, on target: ChannelHandlerContext) -> EventLoopPromise<Void> {
        let written = target.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            let inbound = self.inbound(side)
            let completion = inbound.writes.watchedWriteCompleted()
            guard let next = completion.next, let target = context(side.other) else { return }
            target.write(NIOAny(next), promise: watchedWritePromise(from: side, on: target))
            target.flush()
            if completion.resumesFeed { writabilityChanged(side.other) }
        }
        return written
    }

    /// A frame of the gateway's own to `side`, after what is held toward it.
    private func writeOwnFrame(_ frame: ByteBuffer, to side: Side, promise: EventLoopPromise<Void>? = nil) {
        guard let target = context(side) else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let held = inbound(side.other).writes.drain()
        if let held { target.write(NIOAny(held), promise: nil) }
        target.write(NIOAny(frame), promise: promise)
        // Holding too much had stopped reading the other side: its answer must still be read.
        if held != nil { writabilityChanged(side) }
    }

    private func stop() {
        idleTimer?.stop()
        idleTimer = nil
        lifetimeTimer?.cancel()
        lifetimeTimer = nil
        graceTimer?.cancel()
        graceTimer = nil
        closeHandshakeTimer?.cancel()
        closeHandshakeTimer = nil
    }

    private func inbound(_ side: Side) -> Inbound {
        side == .client ? fromClient : fromUpstream
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
}
