@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Prometheus
import Testing

/// The relay between a WebSocket's two connections, in two `EmbeddedChannel`s on one loop (frames
/// in and out; NIO's codec, tested upstream, sits in front of it in the gateway).
@Suite("WebSocket relay", .serialized)
struct WebSocketRelayTests {
    struct Pair {
        let loop: EmbeddedEventLoop
        let client: EmbeddedChannel
        let upstream: EmbeddedChannel
        let relay: WebSocketRelay
        let session: LiveSession
    }

    func pair(idle: TimeAmount = .seconds(60), lifetime: TimeAmount = .seconds(3600)) throws -> Pair {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry())
        let session = sessions.open(protocol: "websocket", token: nil, policy: .close, eventLoop: loop) { _ in }
        let relay = WebSocketRelay(session: session, idleTimeout: idle, maxLifetime: lifetime)
        let client = EmbeddedChannel(handler: WebSocketSideHandler(side: .client, relay: relay), loop: loop)
        let upstream = EmbeddedChannel(handler: WebSocketSideHandler(side: .upstream, relay: relay), loop: loop)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try upstream.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        return Pair(loop: loop, client: client, upstream: upstream, relay: relay, session: session)
    }

    func text(_ string: String, masked: Bool) -> WebSocketFrame {
        var data = ByteBuffer(string: string)
        let key: WebSocketMaskingKey? = masked ? [1, 2, 3, 4] : nil
        if let key { data.webSocketMask(key) }
        return WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: data)
    }

    /// A frame the relay wrote: its payload is still plain (NIO's encoder masks it on the way out).
    func close(_ frame: WebSocketFrame?) -> (code: WebSocketErrorCode?, reason: String)? {
        guard let frame, frame.opcode == .connectionClose else { return nil }
        var data = frame.data
        let code = data.readWebSocketErrorCode()
        return (code, data.readString(length: data.readableBytes) ?? "")
    }

    @Test("a client frame reaches the upstream masked with a fresh key and the same payload; an upstream frame reaches the client unmasked")
    func relaysBothWays() throws {
        let pair = try pair()
        try pair.client.writeInbound(text("hello", masked: true))
        let up = try #require(try pair.upstream.readOutbound(as: WebSocketFrame.self))
        #expect(up.maskKey != nil && up.fin && up.opcode == .text)
        #expect(String(buffer: up.data) == "hello")  // plain until NIO's encoder masks it with `maskKey`
        try pair.upstream.writeInbound(text("world", masked: false))
        let down = try #require(try pair.client.readOutbound(as: WebSocketFrame.self))
        #expect(down.maskKey == nil && String(buffer: down.data) == "world")
    }

    @Test("a token end sends both sides a 1008 close frame with its reason, and closes both connections after the grace")
    func tokenEndCloses() throws {
        let pair = try pair()
        pair.relay.tokenEnded(.revoked)
        let toClient = close(try pair.client.readOutbound(as: WebSocketFrame.self))
        let toUpstream = try #require(try pair.upstream.readOutbound(as: WebSocketFrame.self))
        #expect(toClient?.code == .policyViolation && toClient?.reason == "token revoked")
        #expect(toUpstream.maskKey != nil && close(toUpstream)?.code == .policyViolation)
        #expect(pair.session.endReason == .tokenRevoked)
        // Frames after the close are not relayed.
        try pair.client.writeInbound(text("late", masked: true))
        #expect(try pair.upstream.readOutbound(as: WebSocketFrame.self) == nil)
        #expect(pair.client.isActive && pair.upstream.isActive)
        pair.loop.advanceTime(by: WebSocketRelay.closeGrace)
        #expect(!pair.client.isActive && !pair.upstream.isActive)
    }

    @Test("the client's answer to the gateway's close frame closes its connection without waiting for the grace")
    func closeAnswerEndsConnection() throws {
        let pair = try pair()
        pair.relay.tokenEnded(.expired)
        #expect(close(try pair.client.readOutbound(as: WebSocketFrame.self))?.reason == "token expired")
        var echo = ByteBuffer()
        echo.write(webSocketErrorCode: .policyViolation)
        try pair.client.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: [0, 0, 0, 0], data: echo))
        #expect(!pair.client.isActive)
    }

    @Test("a frame over max_frame_bytes (the decoder's error) closes the WebSocket with 1009")
    func frameTooLarge() throws {
        let pair = try pair()
        pair.client.pipeline.fireErrorCaught(NIOWebSocketError.invalidFrameLength)
        #expect(close(try pair.client.readOutbound(as: WebSocketFrame.self))?.code == .messageTooLarge)
        #expect(pair.session.endReason == .tooLarge)
    }

    @Test("the maximum lifetime closes the WebSocket with 1001 whatever its traffic")
    func maxLifetime() throws {
        let pair = try pair(lifetime: .seconds(10))
        pair.loop.advanceTime(by: .seconds(9))
        try pair.client.writeInbound(text("busy", masked: true))
        #expect(try pair.client.readOutbound(as: WebSocketFrame.self) == nil)
        pair.loop.advanceTime(by: .seconds(1))
        let frame = close(try pair.client.readOutbound(as: WebSocketFrame.self))
        #expect(frame?.code == .goingAway && frame?.reason == "maximum lifetime reached")
        #expect(pair.session.endReason == .maxLifetime)
    }

    @Test("the client's connection closing sends the upstream a 1001 close frame and closes it")
    func clientGone() throws {
        let pair = try pair()
        pair.client.pipeline.fireChannelInactive()
        let frame = close(try pair.upstream.readOutbound(as: WebSocketFrame.self))
        #expect(frame?.code == .goingAway && frame?.reason == "client gone")
        #expect(!pair.upstream.isActive)
        #expect(pair.session.endReason == .client)
    }

    @Test("a client close frame is relayed and ends the session as closed by the client")
    func clientClose() throws {
        let pair = try pair()
        var payload = ByteBuffer()
        payload.write(webSocketErrorCode: .normalClosure)
        let key: WebSocketMaskingKey = [9, 9, 9, 9]
        payload.webSocketMask(key)
        try pair.client.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: key, data: payload))
        #expect(close(try pair.upstream.readOutbound(as: WebSocketFrame.self))?.code == .normalClosure)
        #expect(pair.session.endReason == .client)
    }

    @Test("a drain (SIGTERM) closes the WebSocket with 1001")
    func drain() throws {
        let pair = try pair()
        pair.client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let frame = close(try pair.client.readOutbound(as: WebSocketFrame.self))
        #expect(frame?.code == .goingAway && frame?.reason == "server shutting down")
        #expect(pair.session.endReason == .draining)
    }

    @Test("no frame either way for the idle timeout closes the WebSocket with 1001; a frame restarts the wait")
    func idleTimeout() async throws {
        // The idle timer runs on the real clock (`DeadlineTimer`), so the loop's clock is brought up
        // to it, far past its start: the lifetime must be longer than that.
        let pair = try pair(idle: .milliseconds(150), lifetime: .hours(24 * 365 * 100))
        try await Task.sleep(for: .milliseconds(100))
        try pair.upstream.writeInbound(text("tick", masked: false))
        _ = try pair.client.readOutbound(as: WebSocketFrame.self)
        try await Task.sleep(for: .milliseconds(100))
        pair.loop.advanceTime(to: .now())
        #expect(try pair.client.readOutbound(as: WebSocketFrame.self) == nil)
        try await Task.sleep(for: .milliseconds(100))
        pair.loop.advanceTime(to: .now())
        let frame = close(try pair.client.readOutbound(as: WebSocketFrame.self))
        #expect(frame?.code == .goingAway && frame?.reason == "idle timeout")
        #expect(pair.session.endReason == .idleTimeout)
    }
}
