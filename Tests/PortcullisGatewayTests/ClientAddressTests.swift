import Foundation
@testable import PortcullisCluster
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
            http: {headers_with_underscores: allow}
            rate_limits:
              - {name: one, key: ip, limit: 1, window: 60s}
              - {name: keyed, key: header:X-Api-Key, limit: 2, window: 60s, max_keys: 16}
            routes:
              - name: keyed
                path_prefix: /keyed
                upstream: {targets: [\(upstreamAddress)]}
                rate_limit: keyed
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

    /// An attacker review's proxy, removed from trusted_proxies by a reload, went on naming the
    /// client (and choosing its rate-limit bucket) over the keep-alive connection it had open.
    @Test("a reload that stops trusting a proxy closes its open keep-alive connection, so that it names no client after the reload; a new connection from it is its own client")
    func reloadDistrustingAProxyReachesItsOpenConnection() async throws {
        let kept = try HTTPTestClient(port: gateway.port, timeout: 5, source: Self.proxy)
        defer { kept.close() }
        let before = try kept.request("GET", "/y", headers: [("X-Forwarded-For", "198.51.100.7")])
        #expect(before.echoedHeaders["x-forwarded-for"] == ["198.51.100.7, \(Self.proxy)"])

        let config = try String(contentsOfFile: gateway.configFile, encoding: .utf8)
            .replacingOccurrences(of: "trusted_proxies: [\(Self.proxy), 10.0.0.0/8, 'fd00::/8']", with: "trusted_proxies: [10.0.0.0/8]")
        try config.write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        #expect(try await Poll.until(timeout: .seconds(5)) { gateway.process.output.contains("configuration reloaded") })
        #expect(kept.waitForClose(), "the idle connection from the proxy stayed open")

        let after = try get("/z", from: Self.proxy, forwardedFor: "198.51.100.8")
        #expect(after.status == 200)
        #expect(after.echoedHeaders["x-forwarded-for"] == [Self.proxy])
    }

    /// A final read found that a connection that had sent nothing yet (its protocol not known, so
    /// no handler could hear the reload) kept the old trust for all its requests.
    @Test("a connection from a proxy that has sent nothing when a reload stops trusting the proxy does not name a client with its first request")
    func reloadDistrustingAProxyReachesASilentConnection() async throws {
        let silent = try HTTPTestClient(port: gateway.port, timeout: 5, source: Self.proxy)
        defer { silent.close() }
        try await Task.sleep(for: .milliseconds(100))
        let config = try String(contentsOfFile: gateway.configFile, encoding: .utf8)
            .replacingOccurrences(of: "trusted_proxies: [\(Self.proxy), 10.0.0.0/8, 'fd00::/8']", with: "trusted_proxies: [10.0.0.0/8]")
        try config.write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        #expect(try await Poll.until(timeout: .seconds(5)) { gateway.process.output.contains("configuration reloaded") })
        try silent.send("GET /w HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n")
        let (bytes, closed) = silent.readUntilClose()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(closed, "the connection stayed open: \(text)")
        #expect(!text.contains("198.51.100.9"), "the removed proxy named the client: \(text)")
        try await Task.sleep(for: .milliseconds(200))
        #expect(!gateway.process.output.contains("client=198.51.100.9"))
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

    func keyed(from source: String, keys: [String]) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: gateway.port, source: source)
        defer { client.close() }
        return try client.request("GET", "/keyed/x", headers: keys.map { ("X-Api-Key", $0) })
    }

    /// The build before counted the first field and forwarded both: with a new junk value first,
    /// every request spent a fresh key, and an upstream reading the last field (or the joined
    /// list) took each as `real`'s — six of six passed a limit of 2.
    @Test("a request naming a header-keyed rate limit's field twice (also as X_Api_Key where underscored names are forwarded) is refused 400 before the upstream; one field is counted")
    func repeatedKeyFieldRefused() throws {
        let before = upstream.requestCount
        for index in 0..<4 {
            let response = try keyed(from: "127.0.0.5", keys: ["junk-\(index)", "real"])
            #expect(response.status == 400, "\(response.status) \(response.text)")
            #expect(response.json["error"] as? String == "invalid_request")
            #expect(response.text.contains("X-Api-Key") || response.text.contains("x-api-key"), "\(response.text)")
        }
        // With underscored names forwarded, X_Api_Key is the same field to a CGI-style upstream.
        let client = try HTTPTestClient(port: gateway.port, source: "127.0.0.5")
        defer { client.close() }
        let spelled = try client.request("GET", "/keyed/x", headers: [("X-Api-Key", "junk-9"), ("X_Api_Key", "real")])
        #expect(spelled.status == 400, "\(spelled.status) \(spelled.text)")
        #expect(upstream.requestCount == before, "a request with two key fields reached the upstream")
        #expect(try keyed(from: "127.0.0.5", keys: ["real"]).status == 200)
        #expect(try keyed(from: "127.0.0.5", keys: ["real"]).status == 200)
        #expect(try keyed(from: "127.0.0.5", keys: ["real"]).status == 429)
    }

    /// NIO's decoder keeps a value's trailing whitespace, which an upstream's parser strips:
    /// counted as is, each spelling would be a key of its own, a fresh budget for one API key.
    @Test("a header-keyed rate limit counts a key sent with trailing spaces or tabs as the key itself, and the upstream receives it trimmed")
    func paddedKeyIsTheKey() throws {
        let first = try keyed(from: "127.0.0.6", keys: ["padded"])
        #expect(first.status == 200)
        let second = try keyed(from: "127.0.0.6", keys: ["padded \t "])
        #expect(second.status == 200, "\(second.status) \(second.text)")
        #expect(second.echoedHeaders["x-api-key"] == ["padded"])
        for spelling in ["padded ", "padded\t", "padded  \t", "padded"] {
            let response = try keyed(from: "127.0.0.6", keys: [spelling])
            #expect(response.status == 429, "\(spelling.debugDescription): \(response.status)")
        }
        // A space after a prepended mark (U+0600) is one grapheme with it; trimmed by bytes all the
        // same, and the gateway stays up.
        #expect(try keyed(from: "127.0.0.6", keys: ["mark\u{0600} "]).status == 200)
        let marked = try keyed(from: "127.0.0.6", keys: ["mark\u{0600}"])
        #expect(marked.status == 200)
        #expect(try keyed(from: "127.0.0.6", keys: ["mark\u{0600}\t"]).status == 429)
        #expect(try keyed(from: "127.0.0.6", keys: ["padded"]).status == 429, "the gateway is still up")
    }

    /// With one shared overflow key, the client that filled the policy (16 keys) spent it too, and
    /// every newcomer after it — another customer's first request, from anywhere — got 429.
    @Test("a client that fills a header-keyed rate limit with keys of its choosing does not lock out newcomers from other addresses")
    func keyFloodDoesNotLockOutNewcomers() throws {
        let attacker = "127.0.0.7"
        for index in 0..<120 { _ = try keyed(from: attacker, keys: ["flood-\(index)"]) }
        #expect(try keyed(from: attacker, keys: ["flood-late"]).status == 429, "the attacker's own new keys are limited")
        let group = { (address: String) in ShardedKeys<Int>.stableHash("ip:" + address) % ShardedKeys<Int>.overflowGroups }
        // Five newcomers in five groups other than the attacker's (each group admits 2).
        var groups: Set<UInt64> = [group(attacker)]
        let newcomers = (10...80).map { "127.0.0.\($0)" }.filter { groups.insert(group($0)).inserted }.prefix(5)
        #expect(newcomers.count == 5)
        for (index, address) in newcomers.enumerated() {
            let response = try keyed(from: address, keys: ["customer-\(index)"])
            #expect(response.status == 200, "a newcomer from \(address) got \(response.status)")
        }
    }
}
