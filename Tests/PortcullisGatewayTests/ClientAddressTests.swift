import Foundation
import PortcullisTestSupport
import Testing

/// The client's address behind trusted proxies, against a real gateway process: clients connect
/// from distinct loopback addresses (127.0.0.1 plays an untrusted client, 127.0.0.2 the trusted
/// load balancer) and the `ip` rate-limit bucket, with a limit of one request, shows which
/// address the gateway took for the client.
@Suite("gateway: the real client address behind trusted proxies", .serialized)
final class ClientAddressTests {
    static let proxy = "127.0.0.2"
    let upstream: TestUpstream
    let gateway: GatewayProcess

    init() async throws {
        upstream = try await TestUpstream.start()
        let upstreamAddress = upstream.address
        gateway = try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            trusted_proxies: [\(Self.proxy), 10.0.0.0/8, 'fd00::/8']
            rate_limits:
              - {name: one, key: ip, limit: 1, window: 60s}
            routes:
              - name: limited
                path_prefix: /
                upstream: {targets: [\(upstreamAddress)]}
                rate_limit: one
            """
        }
    }

    deinit {
        let gateway = self.gateway, upstream = self.upstream
        Task {
            await gateway.stop()
            await upstream.stop()
        }
    }

    /// `GET path` from `source` with `X-Forwarded-For: forwardedFor`, on a fresh connection.
    func get(_ path: String = "/x", from source: String, forwardedFor: String? = nil) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: gateway.port, source: source)
        defer { client.close() }
        return try client.request("GET", path, headers: forwardedFor.map { [("X-Forwarded-For", $0)] } ?? [])
    }

    @Test("a client that is not a trusted proxy cannot change its rate-limit bucket with X-Forwarded-For, and the upstream never sees its claim")
    func untrustedForwardedForIgnored() async throws {
        let first = try get(from: "127.0.0.1", forwardedFor: "1.2.3.4")
        #expect(first.status == 200)
        #expect(first.echoedHeaders["x-forwarded-for"] == ["127.0.0.1"])
        #expect(first.echoedHeaders["forwarded"]?.first?.hasPrefix("for=127.0.0.1;") == true)
        #expect(try get(from: "127.0.0.1", forwardedFor: "5.6.7.8").status == 429)
        #expect(try get(from: "127.0.0.1").status == 429)
        try await Task.sleep(for: .milliseconds(200))
        let log = gateway.process.output
        #expect(log.contains("client=127.0.0.1"), "\(log.suffix(1000))")
        #expect(!log.contains("client=1.2.3.4") && !log.contains("client=5.6.7.8"))
    }

    @Test("behind a trusted proxy each forwarded client has its own bucket, and the upstream sees client then proxy")
    func trustedProxyForwardedFor() async throws {
        let first = try get(from: Self.proxy, forwardedFor: "198.51.100.1")
        #expect(first.status == 200)
        #expect(first.echoedHeaders["x-forwarded-for"] == ["198.51.100.1, \(Self.proxy)"])
        #expect(try get(from: Self.proxy, forwardedFor: "198.51.100.2").status == 200)
        #expect(try get(from: Self.proxy, forwardedFor: "198.51.100.1").status == 429)
        // The proxy's own requests (no header) are its own client.
        #expect(try get(from: Self.proxy).status == 200)
        #expect(try get(from: Self.proxy).status == 429)
        try await Task.sleep(for: .milliseconds(200))
        let log = gateway.process.output
        #expect(log.contains("client=198.51.100.1") && log.contains("client=198.51.100.2"), "\(log.suffix(1000))")
    }

    @Test("behind a trusted proxy, entries left of the rightmost untrusted address are the client's own claims and ignored")
    func spoofedLeftmostIgnored() throws {
        let first = try get(from: Self.proxy, forwardedFor: "6.6.6.6, 203.0.113.9, 10.1.2.3")
        #expect(first.status == 200)
        #expect(first.echoedHeaders["x-forwarded-for"] == ["203.0.113.9, 10.1.2.3, \(Self.proxy)"])
        #expect(try get(from: Self.proxy, forwardedFor: "7.7.7.7, 203.0.113.9, 10.1.2.3").status == 429)
        #expect(try get(from: Self.proxy, forwardedFor: "203.0.113.9").status == 429)
        // A chain of trusted hops only: the leftmost is the client.
        #expect(try get(from: Self.proxy, forwardedFor: "10.9.9.9, 10.1.2.3").status == 200)
        #expect(try get(from: Self.proxy, forwardedFor: "10.9.9.9").status == 429)
    }
}
