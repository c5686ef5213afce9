@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The HTTP/1.1 connection state machine (`ProxyHandler` behind NIO's request decoder) in an
/// `EmbeddedChannel`: the answers the gateway writes itself, their order, the connection closing
/// when the rest of a request cannot be framed, and reads held back from a client that does not
/// take its responses. Exchanges with a real upstream are tested against real processes
/// (`GatewayProxyTests`).
@Suite("HTTP/1.1 connection")
struct ProxyConnectionTests {
    /// Counts the reads `ProxyHandler` lets through to the socket.
    final class ReadCounter: ChannelDuplexHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        typealias OutboundIn = ByteBuffer
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    let fixture: InProcessGateway

    init() throws {
        fixture = try InProcessGateway(yaml: """
            routes:
              - {name: public, path_prefix: /public, methods: [GET], upstream: {targets: [127.0.0.1:1]}}
              - {name: api, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}, auth: {type: jwt}}
            """)
    }

    func connection() throws -> (EmbeddedChannel, ReadCounter) {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop)))
        try sync.addHandler(counter)
        try sync.addHandler(ProxyHandler(gateway: fixture.context, pool: UpstreamPool(eventLoop: channel.embeddedEventLoop), timeouts: nil,
                                         bodyRate: nil, client: HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false)))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 1)).wait()
        return (channel, counter)
    }

    /// Everything the gateway wrote so far, as text.
    func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// The status lines in `text` (a response's body does not end in a line break, so the next
    /// status line may follow it on the same line).
    func statusLines(_ text: String) -> [String] {
        text.matches(of: /HTTP\/1\.1 \d{3} [^\r]*/).map { String($0.output) }
    }

    @Test("pipelined requests the gateway refuses are answered in order, and the connection stays open")
    func pipelinedRefusalsInOrder() throws {
        let (channel, _) = try connection()
        try channel.writeInbound(ByteBuffer(string: "GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
            + "DELETE /public/x HTTP/1.1\r\nHost: a\r\n\r\nGET /api/x HTTP/1.1\r\nHost: a\r\n\r\n"))
        let text = try written(channel)
        #expect(statusLines(text) == ["HTTP/1.1 404 Not Found", "HTTP/1.1 405 Method Not Allowed", "HTTP/1.1 401 Unauthorized"])
        #expect(!text.contains("Connection: close"))
        #expect(channel.isActive)
    }

    @Test("a refused request with a body closes the connection after its answer, so the body is never read as a request")
    func refusedBodyCloses() throws {
        let (channel, _) = try connection()
        // The body is a request of its own; were it parsed, it would be answered too.
        let smuggled = "GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
        try channel.writeInbound(ByteBuffer(string: "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled))
        let text = try written(channel)
        #expect(statusLines(text) == ["HTTP/1.1 401 Unauthorized"])
        #expect(text.contains("Connection: close"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("bytes the decoder refuses are a 400 and the connection closes")
    func malformedCloses() throws {
        let (channel, _) = try connection()
        // The decoder's error reaches `ProxyHandler`, which answers it rather than passing it on.
        try channel.writeInbound(ByteBuffer(string: "GET /public HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"))
        let text = try written(channel)
        #expect(statusLines(text) == ["HTTP/1.1 400 Bad Request"])
        #expect(text.contains("Connection: close"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("reads are held back while the client does not take its responses, and resume when it does")
    func readsPauseForSlowReader() throws {
        let (channel, counter) = try connection()
        channel.read()
        #expect(counter.reads == 1)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.read()
        #expect(counter.reads == 1, "no read while the client's buffer is full")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(counter.reads == 2, "the held read is issued once the client drained")
    }
}
