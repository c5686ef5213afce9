@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP2
import NIOSSL
import Testing

/// The listener's setup for new connections and its client-trust generation, with embedded
/// channels as connections.
@Suite("listener setup: a reload replacing the client trust or the trusted proxies reaches open connections")
struct ListenerSetupTests {
    /// A TLS setup trusting the roots `roots` (stand-ins for DER), or asking for no certificate
    /// (a client context stands in for the server's: only the trust matters here).
    static func tls(_ roots: [UInt8]?, required: Bool = false) throws -> ListenerTLS {
        ListenerTLS(context: try NIOSSLContext(configuration: .makeClientConfiguration()),
                    clientTrust: roots.map { ClientTrust(roots: Set($0.map { [$0] }), required: required) })
    }

    @Test("a reload narrows the client trust when it removes a root, stops asking for certificates, or requires one where it was optional; adding a root (a CA rollover keeping the old CA) or making one optional narrows nothing")
    func narrowing() {
        func trust(_ roots: [UInt8], required: Bool = false) -> ClientTrust { ClientTrust(roots: Set(roots.map { [$0] }), required: required) }
        #expect(ClientTrust.narrows(from: trust([1]), to: trust([2])))
        #expect(ClientTrust.narrows(from: trust([1, 2]), to: trust([2])))
        #expect(ClientTrust.narrows(from: trust([1]), to: nil))
        #expect(ClientTrust.narrows(from: trust([1]), to: trust([1], required: true)))
        #expect(ClientTrust.narrows(from: nil, to: trust([1], required: true)))
        #expect(!ClientTrust.narrows(from: trust([1]), to: trust([1, 2])))
        #expect(!ClientTrust.narrows(from: trust([1], required: true), to: trust([1])))
        #expect(!ClientTrust.narrows(from: trust([1]), to: trust([1])))
        #expect(!ClientTrust.narrows(from: nil, to: trust([1])))
        #expect(!ClientTrust.narrows(from: nil, to: nil))
    }

    @Test("a reload narrowing the client trust advances the generation and hands back the TLS connections opened under the old one; a reload keeping or widening it changes nothing, and a closed connection is no longer held")
    func generations() throws {
        let listener = ListenerSetup(.init(tls: try Self.tls([1]), trustedProxies: nil))
        let first = EmbeddedChannel(), second = EmbeddedChannel(), closed = EmbeddedChannel()
        for channel in [first, second, closed] { #expect(listener.open(channel).generation == 0) }
        try closed.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try closed.close().wait()
        closed.embeddedEventLoop.run()
        let client = HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: true, trust: (listener, 0))
        #expect(client.certificateTrustIsCurrent)

        // Another certificate, the same client trust, or a root added: nothing to tell.
        #expect(listener.replace(.init(tls: try Self.tls([1]), trustedProxies: nil)).underNarrowedTrust == nil)
        #expect(listener.replace(.init(tls: try Self.tls([1, 2]), trustedProxies: nil)).underNarrowedTrust == nil)
        #expect(listener.generation == 0 && client.certificateTrustIsCurrent)

        let told = try #require(listener.replace(.init(tls: try Self.tls([2]), trustedProxies: nil)).underNarrowedTrust)
        #expect(Set(told.map(ObjectIdentifier.init)) == Set([first, second].map(ObjectIdentifier.init)))
        #expect(listener.generation == 1 && !client.certificateTrustIsCurrent)
        // Its certificate no longer counts, whatever the handshake verified.
        #expect(client.clientCertificateThumbprint(channel: first) == nil)

        // A connection opened since is held under the new generation and told of the next change.
        let later = EmbeddedChannel()
        #expect(listener.open(later).generation == 1)
        #expect(try #require(listener.replace(.init(tls: try Self.tls(nil), trustedProxies: nil)).underNarrowedTrust).map(ObjectIdentifier.init)
                == [ObjectIdentifier(later)])
        // A plaintext listener holds no connection.
        let plaintext = ListenerSetup(.init(tls: nil, trustedProxies: nil))
        _ = plaintext.open(EmbeddedChannel())
        let kept = plaintext.replace(.init(tls: nil, trustedProxies: nil))
        #expect(kept.underNarrowedTrust == nil && kept.fromDistrustedProxies.isEmpty)
    }

    /// Trusted proxies as a reload would read them from `trusted_proxies`.
    static func proxies(_ networks: [String]) throws -> TrustedProxies? {
        var config = ClientAddressConfig()
        config.trustedProxies = try networks.map { try CIDR.parse($0).get() }
        return TrustedProxies(config)
    }

    /// An attacker review's proxy, removed from trusted_proxies by a reload, went on naming the
    /// client (and choosing its rate-limit key) over the keep-alive connection it had open.
    @Test("a reload that stops trusting a proxy hands back the open connections from it, whatever the listener's TLS; connections from proxies still trusted, from other peers, or closed are not handed back")
    func distrustedProxies() throws {
        let listener = ListenerSetup(.init(tls: nil, trustedProxies: try Self.proxies(["10.0.0.0/8", "192.0.2.7/32"])))
        let removed = EmbeddedChannel(), kept = EmbeddedChannel(), client = EmbeddedChannel(), closed = EmbeddedChannel()
        _ = listener.open(removed, peer: "10.1.2.3")
        _ = listener.open(kept, peer: "192.0.2.7")
        _ = listener.open(client, peer: "198.51.100.9")
        _ = listener.open(closed, peer: "10.9.9.9")
        try closed.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try closed.close().wait()
        closed.embeddedEventLoop.run()

        let replaced = listener.replace(.init(tls: nil, trustedProxies: try Self.proxies(["192.0.2.7/32"])))
        #expect(replaced.underNarrowedTrust == nil)
        #expect(replaced.fromDistrustedProxies.map(ObjectIdentifier.init) == [ObjectIdentifier(removed)])
        // Told once; trusting no proxy at all hands back the last one.
        let none = listener.replace(.init(tls: nil, trustedProxies: nil))
        #expect(none.fromDistrustedProxies.map(ObjectIdentifier.init) == [ObjectIdentifier(kept)])
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
