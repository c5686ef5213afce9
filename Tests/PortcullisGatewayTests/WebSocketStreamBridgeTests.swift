@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The HTTP/2 stream side of a WebSocket over HTTP/2, in an `EmbeddedChannel`: request body parts
/// in become bytes, bytes out become response body parts, and the stream's end stands for the
/// connection's.
@Suite("WebSocket over an HTTP/2 stream: the bridge")
struct WebSocketStreamBridgeTests {
    /// Collects the bytes that reach the handler after the bridge.
    final class Sink: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var received: [[UInt8]] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(Array(unwrapInboundIn(data).readableBytesView))
        }
    }

    func channel(early: [ByteBuffer] = [], clientEnded: Bool = false) throws -> (EmbeddedChannel, Sink) {
        let sink = Sink()
        let channel = EmbeddedChannel()
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandlers([WebSocketStreamBridge(early: early, clientEnded: clientEnded), sink])
        return (channel, sink)
    }

    /// The first part written is the stream's end (END_STREAM), and the channel is closed.
    func expectStreamEnded(_ channel: EmbeddedChannel, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard case .end(nil) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no END_STREAM before the close", sourceLocation: sourceLocation)
            return
        }
        #expect(!channel.isActive, sourceLocation: sourceLocation)
    }

    @Test("what the client sent during the handshake is handed on first, on the next loop turn, then the stream's later DATA")
    func earlyBytesFirst() throws {
        let (channel, sink) = try channel(early: [ByteBuffer(bytes: [1, 2]), ByteBuffer(bytes: [3])])
        #expect(sink.received.isEmpty, "handed on before the upstream side could be attached")
        channel.embeddedEventLoop.run()
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(bytes: [4, 5])))
        #expect(sink.received == [[1, 2], [3], [4, 5]])
    }

    @Test("the relay's bytes leave as body parts, unchanged")
    func bytesOut() throws {
        let (channel, _) = try channel()
        channel.embeddedEventLoop.run()
        try channel.writeOutbound(ByteBuffer(bytes: [0x82, 0x01, 0x41]))
        guard case .body(.byteBuffer(let body)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no body part written")
            return
        }
        #expect(Array(body.readableBytesView) == [0x82, 0x01, 0x41])
    }

    @Test("the client's END_STREAM closes the stream as a closed connection would, and the gateway's half ends with END_STREAM first")
    func clientEnd() throws {
        let (channel, _) = try channel()
        channel.embeddedEventLoop.run()
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.embeddedEventLoop.run()
        try expectStreamEnded(channel)
    }

    @Test("a client whose half ended during the handshake is closed once its early bytes are handed on")
    func endedDuringHandshake() throws {
        let (channel, sink) = try channel(early: [ByteBuffer(bytes: [9])], clientEnded: true)
        channel.embeddedEventLoop.run()
        #expect(sink.received == [[9]])
        try expectStreamEnded(channel)
    }

    @Test("closing the side ends the stream once: END_STREAM, then the close")
    func closeOnce() throws {
        let (channel, _) = try channel()
        channel.embeddedEventLoop.run()
        channel.close(promise: nil)
        channel.embeddedEventLoop.run()
        try expectStreamEnded(channel)
        #expect(try channel.readOutbound(as: HTTPServerResponsePart.self) == nil)
    }
}
