@testable import PortcullisGateway
import NIOHTTP1
import PortcullisConfig
import Testing

/// Networks, forwarding-header entries and the right-to-left walk on their own.
@Suite("client address: CIDRs and the trusted-proxy walk")
struct ClientAddressUnitTests {
    func cidr(_ text: String) throws -> CIDR { try CIDR.parse(text).get() }
    func ip(_ text: String) throws -> IPAddress { try #require(IPAddress(text)) }

    @Test("CIDRs of both families match their own addresses only, IPv4-mapped IPv6 counting as IPv4")
    func cidrMatching() throws {
        let ten = try cidr("10.0.0.0/8")
        #expect(ten.contains(try ip("10.255.1.2")))
        #expect(!ten.contains(try ip("11.0.0.1")))
        #expect(ten.contains(try ip("::ffff:10.1.1.1")))
        let v6 = try cidr("2001:db8:abcd::/48")
        #expect(v6.contains(try ip("2001:db8:abcd:12::1")))
        #expect(!v6.contains(try ip("2001:db8:abce::1")))
        #expect(!v6.contains(try ip("10.0.0.1")))
        #expect(try cidr("192.0.2.7").contains(try ip("192.0.2.7")))
        #expect(try !cidr("192.0.2.7").contains(try ip("192.0.2.8")))
        #expect(try cidr("::1").contains(try ip("::1")))
        #expect(try cidr("0.0.0.0/0").contains(try ip("203.0.113.1")))
        #expect(try cidr("10.0.0.0/9").contains(try ip("10.127.0.1")) && !cidr("10.0.0.0/9").contains(try ip("10.128.0.1")))
    }

    @Test("a CIDR with bits beyond its prefix, a bad prefix or no address is refused", arguments: [
        ("10.0.0.1/8", CIDR.ParseError.hostBitsSet(suggestion: "10.0.0.0/8")),
        ("2001:db8::1/32", .hostBitsSet(suggestion: "2001:db8::/32")),
        ("10.0.0.0/33", .badPrefix), ("10.0.0.0/", .badPrefix), ("10.0.0.0/-1", .badPrefix), ("::/129", .badPrefix),
        ("10.0.0/8", .notAnAddress), ("example.com", .notAnAddress), ("", .notAnAddress), ("[::1]", .notAnAddress),
    ])
    func cidrErrors(_ text: String, _ expected: CIDR.ParseError) {
        #expect(CIDR.parse(text).failure == expected)
    }

    @Test("forwarding-header entries: bare, bracketed with port (an IPv4-mapped one as IPv4), IPv4 with port, quoted; not unknown, obfuscated or malformed", arguments: [
        ("192.0.2.1", "192.0.2.1"), ("192.0.2.1:8080", "192.0.2.1"), ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"), ("2001:DB8:0::1", "2001:db8::1"), ("\"[2001:db8::1]:1\"", "2001:db8::1"),
        ("::ffff:192.0.2.9", "192.0.2.9"), ("[::ffff:192.0.2.9]", "192.0.2.9"), ("\"[::ffff:192.0.2.9]:4711\"", "192.0.2.9"),
        ("unknown", nil), ("_hidden", nil), ("", nil), ("192.0.2.1:", nil), ("[192.0.2.1]", nil), ("[2001:db8::1", nil),
        ("192.0.2.1:80:80", nil), ("1.2.3.4.5", nil), ("192.0.2.1 x", nil),
    ] as [(String, String?)])
    func forwardedNodes(_ text: String, _ expected: String?) {
        #expect(IPAddress(forwardedNode: Substring(text))?.description == expected)
    }

    func resolve(peer: String, _ headers: [(String, String)], trusted: [String], header: ClientAddressConfig.Header = .xForwardedFor) throws -> TrustedProxies.Resolution {
        var config = ClientAddressConfig()
        config.trustedProxies = try trusted.map(cidr)
        config.header = header
        return try #require(TrustedProxies(config)).resolve(peer: peer, headers: HTTPHeaders(headers))
    }

    @Test("the walk: an untrusted peer is the client; behind trusted hops the rightmost untrusted address wins")
    func walk() throws {
        let trusted = ["127.0.0.2", "10.0.0.0/8", "fd00::/8"]
        #expect(try resolve(peer: "192.0.2.1", [("X-Forwarded-For", "1.2.3.4")], trusted: trusted)
                == .init(client: "192.0.2.1", chain: [], peerTrusted: false))
        #expect(try resolve(peer: "127.0.0.2", [("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.2.3")], trusted: trusted)
                == .init(client: "203.0.113.9", chain: ["203.0.113.9", "10.1.2.3"], peerTrusted: true))
        // Several fields are one list, in order.
        #expect(try resolve(peer: "127.0.0.2", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "[fd00::5]:9")], trusted: trusted).client == "6.6.6.6")
        // All hops trusted: the leftmost is the client.
        #expect(try resolve(peer: "127.0.0.2", [("X-Forwarded-For", "10.0.0.9, 10.0.0.8")], trusted: trusted).client == "10.0.0.9")
        // No header: the proxy is the client.
        #expect(try resolve(peer: "127.0.0.2", [], trusted: trusted) == .init(client: "127.0.0.2", chain: [], peerTrusted: true))
        // An entry that is not an address stops the walk at the trusted hop that wrote it.
        #expect(try resolve(peer: "127.0.0.2", [("X-Forwarded-For", "203.0.113.9, garbage, 10.1.2.3")], trusted: trusted).client == "10.1.2.3")
        #expect(try resolve(peer: "127.0.0.2", [("X-Forwarded-For", "203.0.113.9,,")], trusted: trusted).client == "127.0.0.2")
        // IPv6 clients behind an IPv6 proxy, in canonical form.
        #expect(try resolve(peer: "fd00::1", [("X-Forwarded-For", "2001:DB8::7")], trusted: trusted).client == "2001:db8::7")
        // The other header is not read.
        #expect(try resolve(peer: "127.0.0.2", [("Forwarded", "for=198.51.100.1")], trusted: trusted).client == "127.0.0.2")
    }

    @Test("with client_address_header: forwarded, the for= parameters of Forwarded are walked the same way")
    func forwardedHeader() throws {
        let trusted = ["127.0.0.2", "10.0.0.0/8"]
        let headers = [("Forwarded", #"for=6.6.6.6, For="[2001:db8::9]:4711";proto=https, for=10.0.0.3;by=10.0.0.1"#), ("X-Forwarded-For", "1.1.1.1")]
        #expect(try resolve(peer: "127.0.0.2", headers, trusted: trusted, header: .forwarded)
                == .init(client: "2001:db8::9", chain: ["2001:db8::9", "10.0.0.3"], peerTrusted: true))
        #expect(try resolve(peer: "127.0.0.2", [("Forwarded", "for=unknown")], trusted: trusted, header: .forwarded).client == "127.0.0.2")
    }

    @Test("the forwarding headers sent upstream: the peer alone from an untrusted client, the believed chain behind a trusted proxy")
    func upstreamChain() throws {
        var config = ClientAddressConfig()
        config.trustedProxies = [try cidr("10.0.0.0/8")]
        let headers = HTTPHeaders([("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.2.3")])
        let untrusted = HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false, trustedProxies: TrustedProxies(config))
        #expect(HeaderRewriter.forwardingChain(client: untrusted, headers: headers, priorForwarded: "for=1.1.1.1") == ("192.0.2.1", nil))
        let trusted = HeaderRewriter.ClientInfo(address: "10.0.0.1", isTLS: false, trustedProxies: TrustedProxies(config))
        #expect(HeaderRewriter.forwardingChain(client: trusted, headers: headers, priorForwarded: "for=1.1.1.1") == ("203.0.113.9, 10.1.2.3, 10.0.0.1", nil))
        config.header = .forwarded
        let forwarded = HeaderRewriter.ClientInfo(address: "10.0.0.1", isTLS: false, trustedProxies: TrustedProxies(config))
        let chain = HeaderRewriter.forwardingChain(client: forwarded, headers: HTTPHeaders([("Forwarded", "for=6.6.6.6, for=203.0.113.9;proto=https, for=10.1.2.3")]),
                                                   priorForwarded: "for=6.6.6.6, for=203.0.113.9;proto=https, for=10.1.2.3")
        #expect(chain == ("203.0.113.9, 10.1.2.3, 10.0.0.1", "for=203.0.113.9;proto=https, for=10.1.2.3"))
        let none = HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false)
        #expect(HeaderRewriter.forwardingChain(client: none, headers: headers, priorForwarded: "for=1.1.1.1") == ("192.0.2.1", nil))
    }

    @Test("configuration errors name the file, line and key", arguments: [
        ("trusted_proxies: [10.0.0.1/8]", "trusted_proxies", "10.0.0.0/8"),
        ("trusted_proxies: [proxy.internal]", "trusted_proxies", "not an IP address"),
        ("client_address_header: x-real-ip", "client_address_header", "x-forwarded-for, forwarded"),
    ])
    func configErrors(_ line: String, _ key: String, _ message: String) {
        Self.expectConfigError(line, key, message)
    }

    /// The build before took each, matched no request with it, and sent the host's requests to
    /// the host-less routes past the route's authentication (an attacker review).
    @Test("a route host with a port, a wildcard or a trailing dot is a configuration error naming the file, line and key", arguments: [
        "secret.test:8443", "*.secret.test", "secret.test.", "[::1]:8443",
    ])
    func routeHostErrors(_ host: String) {
        Self.expectConfigError("routes: [{name: h, host: '\(host)', path_prefix: /, upstream: {targets: ['127.0.0.1:1']}}]", "routes[0].host", "without port, wildcard or trailing dot",
                               routes: false)
    }

    @Test("route hosts as clients send them load: a name in any case, an IPv6 address in brackets")
    func routeHostsLoad() throws {
        for host in ["Secret.Test", "[::1]", "internal_name.lan"] {
            let config = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\nroutes: [{name: h, host: '\(host)', path_prefix: /, upstream: {targets: ['127.0.0.1:1']}}]\n",
                                                 file: "gw.yaml")
            #expect(config.routes.first?.host == HostHeader.name(host), "\(host)")
        }
    }

    static func expectConfigError(_ line: String, _ key: String, _ message: String, routes: Bool = true) {
        let yaml = "listen: 127.0.0.1:1\n\(line)\n" + (routes ? "routes: [{name: r, path_prefix: /, upstream: {targets: ['127.0.0.1:1']}}]\n" : "")
        do {
            _ = try GatewayConfig.parse(yaml: yaml, file: "gw.yaml")
            Issue.record("accepted: \(line)")
        } catch let error as ConfigError {
            #expect(error.file == "gw.yaml" && error.line == 2 && error.keyPath == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }
}
