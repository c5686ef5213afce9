import Foundation
import PortcullisGateway
import PortcullisTestSupport
import Testing

/// A gateway with `proxy_protocol: true` behind real PROXY protocol senders: raw sockets writing
/// v1 and v2 headers byte for byte, and HAProxy with `send-proxy` / `send-proxy-v2`. The upstream
/// echoes the `X-Forwarded-For` it received, which names the client the gateway took.
@Suite("gateway: PROXY protocol v1 and v2", .serialized)
final class ProxyProtocolTests {
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
            proxy_protocol: true
            limits: {header_read_timeout: 1s}
            routes:
              - {name: all, path_prefix: /, upstream: {targets: [\(upstreamAddress)]}}
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

    static let request = Array("GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n".utf8)

    /// Sends `header` then a request, in pieces of `piece` bytes; the response.
    func exchange(_ header: [UInt8], piece: Int = .max) throws -> HTTPTestResponse {
        let client = try gateway.client()
        defer { client.close() }
        let bytes = header + Self.request
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + piece)
            try client.send(Array(bytes[offset..<end]))
            offset = end
        }
        return try client.readResponse()
    }

    func refused(_ reason: String) throws -> Double {
        PrometheusText.sample(try gateway.metrics(), "portcullis_proxy_protocol_refused_total{reason=\"\(reason)\"}") ?? -1
    }

    @Test("a v1 header names the client: IPv4 and IPv6, whole or a byte at a time; UNKNOWN leaves the TCP peer")
    func version1() throws {
        let v4 = try exchange(Array("PROXY TCP4 203.0.113.7 127.0.0.1 56324 8080\r\n".utf8))
        #expect(v4.status == 200)
        #expect(v4.echoedHeaders["x-forwarded-for"] == ["203.0.113.7"])
        let v6 = try exchange(Array("PROXY TCP6 2001:db8::7 ::1 56324 8080\r\n".utf8), piece: 1)
        #expect(v6.echoedHeaders["x-forwarded-for"] == ["2001:db8::7"])
        let unknown = try exchange(Array("PROXY UNKNOWN\r\n".utf8))
        #expect(unknown.echoedHeaders["x-forwarded-for"] == ["127.0.0.1"])
    }

    @Test("a v2 header names the client over IPv4 and IPv6, with TLVs skipped; LOCAL leaves the TCP peer")
    func version2() throws {
        let v4 = try exchange(ProxyProtocolHeader.encodeV2(source: ("198.51.100.9", 4000), destination: ("127.0.0.1", 8080), tlv: [0x04, 0x00, 0x01, 0x00]))
        #expect(v4.echoedHeaders["x-forwarded-for"] == ["198.51.100.9"])
        let v6 = try exchange(ProxyProtocolHeader.encodeV2(source: ("2001:db8:1::5", 4000), destination: ("::1", 8080)), piece: 3)
        #expect(v6.echoedHeaders["x-forwarded-for"] == ["2001:db8:1::5"])
        let local = try exchange(ProxyProtocolHeader.encodeV2(source: nil, destination: nil))
        #expect(local.echoedHeaders["x-forwarded-for"] == ["127.0.0.1"])
    }

    @Test("a connection without a valid header is closed without an answer and counted, nothing reaching the upstream", arguments: [
        "GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "PROXY TCP4 1.2.3.4 127.0.0.1 1 2\n",
        "PROXY TCP4 1.2.3.4  127.0.0.1 1 2\r\n",
        "PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",
        "\r\n\r\n\0\r\nQUIT\n\u{11}\u{11}\0\u{0C}",
    ])
    func invalidHeader(_ bytes: String) throws {
        let before = try refused("invalid")
        let requests = upstream.requestCount
        let client = try gateway.client(timeout: 5)
        defer { client.close() }
        try client.send(Array(bytes.utf8) + Self.request)
        let drained = client.drain()
        #expect(drained.bytes == 0 && drained.closed)
        #expect(try refused("invalid") == before + 1)
        #expect(upstream.requestCount == requests)
    }

    @Test("a connection that sends no complete header within header_read_timeout is closed and counted")
    func headerTimeout() throws {
        let before = try refused("timeout")
        let client = try gateway.client(timeout: 5)
        defer { client.close() }
        try client.send(Array("PROXY TCP4 1.2.3.4".utf8))
        let started = Date()
        let drained = client.drain()
        #expect(drained.bytes == 0 && drained.closed)
        #expect(Date().timeIntervalSince(started) < 4)
        #expect(try refused("timeout") == before + 1)
    }

    /// HAProxy in TCP mode on two ports, `send-proxy` and `send-proxy-v2`, in front of `gatewayPort`.
    func startHAProxy(gatewayPort: Int) async throws -> (process: ManagedProcess, v1Port: Int, v2Port: Int) {
        let v1Port = try FreePort.allocate(), v2Port = try FreePort.allocate()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-haproxy")
        let config = """
            global
                nbthread 1
            defaults
                mode tcp
                timeout connect 5s
                timeout client 30s
                timeout server 30s
            frontend v1
                bind 127.0.0.1:\(v1Port)
                default_backend gw_v1
            frontend v2
                bind 127.0.0.1:\(v2Port)
                default_backend gw_v2
            backend gw_v1
                server gw 127.0.0.1:\(gatewayPort) send-proxy
            backend gw_v2
                server gw 127.0.0.1:\(gatewayPort) send-proxy-v2

            """
        try config.write(toFile: directory + "/haproxy.cfg", atomically: true, encoding: .utf8)
        let haproxy = try ManagedProcess(executable: "/usr/sbin/haproxy", arguments: ["-f", directory + "/haproxy.cfg", "-db"],
                                         logFile: directory + "/haproxy.log")
        try await Readiness.waitForPort(port: v2Port, timeout: .seconds(10))
        return (haproxy, v1Port, v2Port)
    }

    @Test("behind HAProxy with send-proxy and send-proxy-v2 the gateway sees the address HAProxy accepted the client from")
    func haproxy() async throws {
        let (haproxy, v1Port, v2Port) = try await startHAProxy(gatewayPort: gateway.port)
        defer { Task { await haproxy.terminate() } }
        for (port, source) in [(v1Port, "127.0.0.5"), (v2Port, "127.0.0.6")] {
            let client = try HTTPTestClient(port: port, source: source)
            defer { client.close() }
            let response = try client.request("GET", "/x")
            #expect(response.status == 200, "\(haproxy.output)")
            #expect(response.echoedHeaders["x-forwarded-for"] == [source], "port \(port)")
        }
    }

    @Test("on a TLS listener the header comes before the TLS handshake: curl through HAProxy's TCP passthrough reaches the gateway as itself")
    func beforeTLS() async throws {
        let authority = try TestCertificateAuthority.make(name: "Gateway CA")
        let leaf = try authority.issue("gateway")
        let upstreamAddress = upstream.address
        let tlsGateway = try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            proxy_protocol: true
            tls: {certificate_chain: \(leaf.certificate), private_key: \(leaf.privateKey)}
            routes:
              - {name: all, path_prefix: /, upstream: {targets: [\(upstreamAddress)]}}
            """
        }
        let (haproxy, v1Port, v2Port) = try await startHAProxy(gatewayPort: tlsGateway.port)
        defer {
            Task {
                await haproxy.terminate()
                await tlsGateway.stop()
            }
        }
        for (port, source) in [(v1Port, "127.0.0.8"), (v2Port, "127.0.0.9")] {
            let run = try runCommand("/usr/bin/curl", ["-sS", "--cacert", authority.certificate, "--interface", source, "https://127.0.0.1:\(port)/x"])
            #expect(run.status == 0, "\(run.stderr)")
            let echoed = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any]
            let headers = echoed?["headers"] as? [String: [String]]
            #expect(headers?["x-forwarded-for"] == [source], "\(run.stdout)")
            #expect(headers?["x-forwarded-proto"] == ["https"])
        }
    }
}
