@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP2
import NIOSSL
import Testing

/// The listener's setup for new connections and its client-trust generation, with embedded
/// channels as connections.
@Suite("listener setup: a reload replacing the client trust reaches open connections")
struct ListenerSetupTests {
    /// A TLS setup trusting `trust` (a client context stands in for the server's: only the
    /// digest matters here).
    static func tls(_ trust: [UInt8]?) throws -> ListenerTLS {
        ListenerTLS(context: try NIOSSLContext(configuration: .makeClientConfiguration()), clientTrust: trust)
    }

    @Test("a reload changing the client trust advances the generation and hands back the connections opened under the old one; a reload keeping it changes nothing, and a closed connection is no longer held")
    func generations() throws {
        let listener = ListenerSetup(.init(tls: try Self.tls([1]), trustedProxies: nil))
        let first = EmbeddedChannel(), second = EmbeddedChannel(), closed = EmbeddedChannel()
        for channel in [first, second, closed] { #expect(listener.open(channel).generation == 0) }
        try closed.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try closed.close().wait()
        closed.embeddedEventLoop.run()
        let client = HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: true, trust: (listener, 0))
        #expect(client.certificateTrustIsCurrent)

        // Another certificate, the same client trust: nothing to tell.
        #expect(listener.replace(.init(tls: try Self.tls([1]), trustedProxies: nil)) == nil)
        #expect(listener.generation == 0 && client.certificateTrustIsCurrent)

        let told = try #require(listener.replace(.init(tls: try Self.tls([2]), trustedProxies: nil)))
        #expect(Set(told.map(ObjectIdentifier.init)) == Set([first, second].map(ObjectIdentifier.init)))
        #expect(listener.generation == 1 && !client.certificateTrustIsCurrent)
        // Its certificate no longer counts, whatever the handshake verified.
        #expect(client.clientCertificateThumbprint(channel: first) == nil)

        // A connection opened since is held under the new generation and told of the next change.
        let later = EmbeddedChannel()
        #expect(listener.open(later).generation == 1)
        #expect(try #require(listener.replace(.init(tls: try Self.tls(nil), trustedProxies: nil))).map(ObjectIdentifier.init) == [ObjectIdentifier(later)])
        // A listener that asks for no certificate holds no connection.
        #expect(listener.open(EmbeddedChannel()).generation == 2)
        #expect(try #require(listener.replace(.init(tls: try Self.tls([3]), trustedProxies: nil))).isEmpty)
    }

    @Test("over HTTP/2 a replaced client trust reaches the connection manager as a quiesce (GOAWAY), and no further: its streams are not told; other events pass unchanged")
    func http2Quiescing() throws {
        final class Seen: ChannelInboundHandler {
            typealias InboundIn = Never
            var events: [String] = []
            func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) { events.append("\(type(of: event))") }
        }
        let seen = Seen()
        let channel = EmbeddedChannel(handlers: [HTTP2ClientTrustQuiescing(), seen])
        channel.pipeline.fireUserInboundEventTriggered(ClientTrustReplacedEvent())
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        #expect(seen.events == ["ChannelShouldQuiesceEvent", "IdleStateEvent"])
        _ = try channel.finish()
    }
}
