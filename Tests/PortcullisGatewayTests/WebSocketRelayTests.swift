@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Prometheus
import Testing

/// The relay between a WebSocket's two connections, in two `EmbeddedChannel`s on one loop: bytes
/// in, bytes out.
@Suite("WebSocket relay", .serialized)
struct WebSocketRelayTests {
    struct Pair {
        let loop: EmbeddedEventLoop
        let client: EmbeddedChannel
        let upstream: EmbeddedChannel
        let relay: WebSocketRelay
        let session: LiveSession

        /// Everything written to `channel` so far, and how many writes it took.
        func written(_ channel: EmbeddedChannel) throws -> (bytes: [UInt8], writes: Int) {
            var bytes: [UInt8] = []
            var writes = 0
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                bytes += Array(buffer.readableBytesView)
                writes += 1
            }
            return (bytes, writes)
        }

        func send(_ bytes: [UInt8], from channel: EmbeddedChannel) throws {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }
    }

    func pair(idle: TimeAmount = .seconds(60), lifetime: TimeAmount = .seconds(3600), maxFrame: Int = 64 * 1024) throws -> Pair {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry())
        let session = sessions.open(protocol: .websocket, token: nil, policy: .close, eventLoop: loop) { _ in }
        let relay = WebSocketRelay(session: session, idleTimeout: idle, maxLifetime: lifetime, maxFrameBytes: maxFrame)
        let client = EmbeddedChannel(handler: WebSocketSideHandler(side: .client, relay: relay), loop: loop)
        let upstream = EmbeddedChannel(handler: WebSocketSideHandler(side: .upstream, relay: relay), loop: loop)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try upstream.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        return Pair(loop: loop, client: client, upstream: upstream, relay: relay, session: session)
    }

    static let key: [UInt8] = [1, 2, 3, 4]

    func clientText(_ string: String) -> [UInt8] {
        WireFrame.bytes(opcode: WebSocketFrameHeader.text, maskKey: Self.key, payload: Array(string.utf8))
    }

    func serverText(_ string: String) -> [UInt8] {
        WireFrame.bytes(opcode: WebSocketFrameHeader.text, payload: Array(string.utf8))
    }

    /// The close frame `bytes` hold, whole and alone: its code and reason, and whether it is masked.
    func close(_ bytes: [UInt8]) -> (code: WebSocketErrorCode, reason: String, masked: Bool)? {
        guard bytes.count >= 4, bytes[0] == 0x88, Int(bytes[1] & 0x7F) < 126 else { return nil }
        let masked = bytes[1] & 0x80 != 0
        let length = Int(bytes[1] & 0x7F)
        let start = masked ? 6 : 2
        guard bytes.count == start + length else { return nil }
        var payload = Array(bytes[start...])
        if masked { payload = payload.enumerated().map { $0.element ^ bytes[2 + $0.offset % 4] } }
        var buffer = ByteBuffer(bytes: payload)
        guard let code = buffer.readWebSocketErrorCode() else { return nil }
        return (code, buffer.readString(length: buffer.readableBytes) ?? "", masked)
    }

    @Test("a client's masked frames reach the upstream byte for byte, many frames from one read in one write; the upstream's frames reach the client byte for byte")
    func relaysBytesUnchanged() throws {
        let pair = try pair(maxFrame: 1 << 20)
        let frames = clientText("hello") + WireFrame.bytes(opcode: WebSocketFrameHeader.ping, maskKey: Self.key, payload: [7])
            + WireFrame.bytes(opcode: WebSocketFrameHeader.binary, maskKey: [9, 8, 7, 6], payload: Array(repeating: 0x55, count: 70_000))
        try pair.send(frames, from: pair.client)
        let up = try pair.written(pair.upstream)
        #expect(up.bytes == frames && up.writes == 1)
        try pair.send(serverText("world"), from: pair.upstream)
        #expect(try pair.written(pair.client).bytes == serverText("world"))
    }

    @Test("a header split across reads is held back until it is complete, then passed on ahead of the rest")
    func splitHeaderHeldBack() throws {
        let pair = try pair()
        let frame = WireFrame.bytes(opcode: WebSocketFrameHeader.binary, maskKey: Self.key, payload: Array(repeating: 1, count: 300))
        let first = clientText("a")
        try pair.send(first + frame[..<3], from: pair.client)
        #expect(try pair.written(pair.upstream).bytes == first)
        try pair.send(Array(frame[3..<6]), from: pair.client)
        #expect(try pair.written(pair.upstream).bytes.isEmpty)
        try pair.send(Array(frame[6..<20]), from: pair.client)
        #expect(try pair.written(pair.upstream).bytes == Array(frame[..<20]))
        try pair.send(Array(frame[20...]), from: pair.client)
        #expect(try pair.written(pair.upstream).bytes == Array(frame[20...]))
    }

    @Test("a token end sends the client an unmasked 1008 close frame with its reason and the upstream a masked one, drops what follows, and closes both connections after the grace")
    func tokenEndCloses() throws {
        let pair = try pair()
        pair.relay.tokenEnded(.revoked)
        let toClient = close(try pair.written(pair.client).bytes)
        let toUpstream = close(try pair.written(pair.upstream).bytes)
        #expect(toClient?.code == .policyViolation && toClient?.reason == "token revoked" && toClient?.masked == false)
        #expect(toUpstream?.code == .policyViolation && toUpstream?.reason == "token revoked" && toUpstream?.masked == true)
        #expect(pair.session.endReason == .tokenRevoked)
        try pair.send(clientText("late"), from: pair.client)
        #expect(try pair.written(pair.upstream).bytes.isEmpty)
        #expect(pair.client.isActive && pair.upstream.isActive)
        pair.loop.advanceTime(by: WebSocketRelay.closeGrace)
        #expect(!pair.client.isActive && !pair.upstream.isActive)
    }

    @Test("a token end while a frame is half way to the client: the client gets the rest of that frame, then the close frame; nothing after it")
    func tokenEndAtFrameBoundary() throws {
        let pair = try pair()
        let big = WireFrame.bytes(opcode: WebSocketFrameHeader.binary, payload: Array(repeating: 0x42, count: 5000))
        try pair.send(Array(big[..<1000]), from: pair.upstream)
        #expect(try pair.written(pair.client).bytes == Array(big[..<1000]))
        pair.relay.tokenEnded(.revoked)
        #expect(close(try pair.written(pair.upstream).bytes)?.code == .policyViolation)  // nothing was in flight that way
        #expect(try pair.written(pair.client).bytes.isEmpty)
        try pair.send(Array(big[1000..<3000]), from: pair.upstream)
        #expect(try pair.written(pair.client).bytes == Array(big[1000..<3000]))
        try pair.send(Array(big[3000...]) + serverText("after"), from: pair.upstream)
        let rest = try pair.written(pair.client).bytes
        let tail = big.count - 3000
        #expect(rest.count > tail && Array(rest.prefix(tail)) == Array(big[3000...]), "the rest of the frame")
        #expect(close(Array(rest.dropFirst(tail)))?.code == .policyViolation)
    }

    @Test("the client's answer to the gateway's close frame closes its connection without waiting for the grace")
    func closeAnswerEndsConnection() throws {
        let pair = try pair()
        pair.relay.tokenEnded(.expired)
        #expect(close(try pair.written(pair.client).bytes)?.reason == "token expired")
        try pair.send(WireFrame.bytes(opcode: WebSocketFrameHeader.close, maskKey: Self.key, payload: [0x03, 0xF0]), from: pair.client)
        #expect(!pair.client.isActive)
    }

    @Test("a frame over max_frame_bytes closes the WebSocket with 1009 from its header alone: the frames before it pass, none of it does")
    func frameTooLarge() throws {
        let pair = try pair(maxFrame: 1000)
        let before = clientText("fine")
        let big = WireFrame.bytes(opcode: WebSocketFrameHeader.binary, maskKey: Self.key, payload: Array(repeating: 0, count: 1001))
        try pair.send(before + big[..<10], from: pair.client)
        let up = try pair.written(pair.upstream).bytes
        #expect(Array(up.prefix(before.count)) == before)
        #expect(close(Array(up.dropFirst(before.count)))?.code == .messageTooLarge)
        #expect(close(try pair.written(pair.client).bytes)?.code == .messageTooLarge)
        #expect(pair.session.endReason == .tooLarge)
    }

    @Test("an unmasked client frame or a masked upstream frame closes the WebSocket with 1002 and is not passed on")
    func protocolViolations() throws {
        let pair = try pair()
        try pair.send(WireFrame.bytes(opcode: WebSocketFrameHeader.text, payload: Array("plain".utf8)), from: pair.client)
        #expect(close(try pair.written(pair.upstream).bytes)?.code == .protocolError)
        #expect(close(try pair.written(pair.client).bytes)?.code == .protocolError)
        #expect(pair.session.endReason == .protocolError)

        let other = try self.pair()
        try other.send(WireFrame.bytes(opcode: WebSocketFrameHeader.text, maskKey: Self.key, payload: Array("masked".utf8)), from: other.upstream)
        #expect(close(try other.written(other.client).bytes)?.code == .protocolError)
    }

    @Test("the maximum lifetime closes the WebSocket with 1001 whatever its traffic")
    func maxLifetime() throws {
        let pair = try pair(lifetime: .seconds(10))
        pair.loop.advanceTime(by: .seconds(9))
        try pair.send(clientText("busy"), from: pair.client)
        #expect(try pair.written(pair.client).bytes.isEmpty)
        pair.loop.advanceTime(by: .seconds(1))
        let frame = close(try pair.written(pair.client).bytes)
        #expect(frame?.code == .goingAway && frame?.reason == "maximum lifetime reached")
        #expect(pair.session.endReason == .maxLifetime)
    }

    @Test("the client's connection closing sends the upstream a masked 1001 close frame and closes it")
    func clientGone() throws {
        let pair = try pair()
        pair.client.pipeline.fireChannelInactive()
        let frame = close(try pair.written(pair.upstream).bytes)
        #expect(frame?.code == .goingAway && frame?.reason == "client gone" && frame?.masked == true)
        #expect(!pair.upstream.isActive)
        #expect(pair.session.endReason == .client)
    }

    @Test("the upstream's connection closing half way through a frame closes the client's connection without a close frame (none can follow part of a frame)")
    func upstreamGoneMidFrame() throws {
        let pair = try pair()
        let big = WireFrame.bytes(opcode: WebSocketFrameHeader.binary, payload: Array(repeating: 1, count: 500))
        try pair.send(Array(big[..<100]), from: pair.upstream)
        pair.upstream.pipeline.fireChannelInactive()
        #expect(try pair.written(pair.client).bytes == Array(big[..<100]))
        #expect(!pair.client.isActive)
    }

    @Test("a client close frame is relayed unchanged; the session stays open, its token watched, until the connections close, then ends as closed by the client")
    func clientClose() throws {
        let pair = try pair()
        let frame = WireFrame.bytes(opcode: WebSocketFrameHeader.close, maskKey: [9, 9, 9, 9], payload: [0x03, 0xE8])
        try pair.send(frame, from: pair.client)
        #expect(try pair.written(pair.upstream).bytes == frame)
        #expect(pair.session.endReason == nil)
        pair.upstream.pipeline.fireChannelInactive()
        #expect(pair.session.endReason == .client)
    }

    @Test("a close frame's header whose payload never comes: a token ending meanwhile still closes the WebSocket (1008 to the client, both connections after the grace), and without one both connections close after the close handshake's limit")
    func halfSentClose() throws {
        let header: [UInt8] = [0x88, 0x80 | 125, 9, 9, 9, 9]
        let revoked = try pair()
        try revoked.send(header, from: revoked.client)
        #expect(try revoked.written(revoked.upstream).bytes == header)
        revoked.relay.tokenEnded(.revoked)
        #expect(close(try revoked.written(revoked.client).bytes)?.code == .policyViolation)
        #expect(revoked.session.endReason == .tokenRevoked)
        revoked.loop.advanceTime(by: WebSocketRelay.closeGrace)
        #expect(!revoked.client.isActive && !revoked.upstream.isActive)

        let stalled = try pair()
        try stalled.send(header, from: stalled.client)
        stalled.loop.advanceTime(by: WebSocketRelay.closeHandshakeTimeout - .milliseconds(1))
        #expect(stalled.client.isActive && stalled.upstream.isActive)
        stalled.loop.advanceTime(by: .milliseconds(1))
        #expect(!stalled.client.isActive && !stalled.upstream.isActive)
        #expect(stalled.session.endReason == .client)
    }

    @Test("a drain (SIGTERM) closes the WebSocket with 1001")
    func drain() throws {
        let pair = try pair()
        pair.client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let frame = close(try pair.written(pair.client).bytes)
        #expect(frame?.code == .goingAway && frame?.reason == "server shutting down")
        #expect(pair.session.endReason == .draining)
    }

    @Test("no bytes either way for the idle timeout closes the WebSocket with 1001; bytes (even part of a frame) restart the wait")
    func idleTimeout() async throws {
        // The idle timer runs on the real clock (`DeadlineTimer`), so the loop's clock is brought up
        // to it, far past its start: the lifetime must be longer than that.
        let pair = try pair(idle: .milliseconds(150), lifetime: .hours(24 * 365 * 100))
        try await Task.sleep(for: .milliseconds(100))
        try pair.send([0x81], from: pair.upstream)
        try await Task.sleep(for: .milliseconds(100))
        pair.loop.advanceTime(to: .now())
        #expect(try pair.written(pair.client).bytes.isEmpty)
        try await Task.sleep(for: .milliseconds(100))
        pair.loop.advanceTime(to: .now())
        let frame = close(try pair.written(pair.client).bytes)
        #expect(frame?.code == .goingAway && frame?.reason == "idle timeout")
        #expect(pair.session.endReason == .idleTimeout)
    }
}
