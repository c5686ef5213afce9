import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// HTTP/2 from clients against a real gateway process: curl, nghttp2's h2load and a raw HTTP/2
/// peer (Scripts/h2_peer.py, frames built with python-hyper's hyperframe and hpack) in front, a
/// real HTTP/1.1 upstream behind. The attacks on HTTP/2 servers are each performed for real.
@Suite("HTTP/2 from clients", .serialized)
final class HTTP2GatewayTests {
    static let maxStreams = 20
    let upstream: TestUpstream
    let issuer: TestIssuer
    let gateway: GatewayProcess

    init() async throws {
        upstream = try await TestUpstream.start()
        let issuer = try TestIssuer()
        self.issuer = issuer
        let upstreamAddress = upstream.address
        gateway = try await GatewayProcess.start { port, adminPort, directory in
            let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            http2: {max_concurrent_streams: \(Self.maxStreams)}
            \(issuers)
            routes:
              - name: api
                path_prefix: /api
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
              - name: cors
                path_prefix: /cors
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
                cors: {allowed_origins: [https://app.test]}
              - name: hurried
                path_prefix: /hurried
                upstream: {targets: [\(upstreamAddress)], response_header_timeout: 500ms}
              - name: public
                path_prefix: /
                upstream: {targets: [\(upstreamAddress)]}
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

    /// A gateway of its own, with `settings` (top-level YAML lines) and one route for every path
    /// to the test upstream, `route` added to it.
    func oneRouteGateway(settings: String, route: String? = nil) async throws -> GatewayProcess {
        let upstreamAddress = upstream.address
        return try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            \(settings)
            routes:
              - name: only
                path_prefix: /
                upstream: {targets: [\(upstreamAddress)]}
            """ + (route.map { "\n    " + $0 } ?? "")
        }
    }

    static let peerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/h2_peer.py").path

    /// Runs the raw peer against the suite's gateway and returns what it saw.
    func peer(_ mode: String, _ arguments: String...) throws -> [String: Any] {
        try Self.peer(mode, port: gateway.port, arguments)
    }

    /// Runs the raw peer against the gateway on `port` and returns what it saw.
    static func peer(_ mode: String, port: Int, _ arguments: [String]) throws -> [String: Any] {
        let result = try runCommand("/usr/bin/env", ["python3", peerScript, mode, String(port)] + arguments)
        guard let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw FixtureError("h2_peer.py \(mode) printed no result: \(result.stdout) \(result.stderr)")
        }
        return object
    }

    func curl(_ arguments: [String]) throws -> CommandResult {
        try runCommand("/usr/bin/env", ["curl", "-s", "--max-time", "10"] + arguments)
    }

    func metric(_ line: String) throws -> Double? {
        try gateway.metrics().split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    /// swift-nio-http2 cannot encode a header block over the client's frame size, and fails the
    /// connection: on the build before, such an upstream head closed the client's connection
    /// with GOAWAY, and every other stream on it with it.
    @Test("an upstream's response head that would not fit one HTTP/2 frame once encoded is a 502 for its stream alone; the client's connection goes on")
    func oversizedResponseHead() throws {
        let base = "http://127.0.0.1:\(gateway.port)"
        // nghttp sends both requests on one connection.
        let result = try runCommand("/usr/bin/env", ["timeout", "10", "nghttp", "-v", base + "/raw/huge-head", base + "/after"])
        let statuses = result.stdout.split(separator: "\n").filter { $0.contains(" :status: ") }.map { $0.split(separator: " ").last.map(String.init) ?? "" }
        #expect(statuses.sorted() == ["200", "502"], "\(result.stdout.suffix(1500))")
        #expect(!result.stdout.contains("recv GOAWAY"), "\(result.stdout.suffix(1500))")
        #expect(try metric("portcullis_upstream_failures_total{route=\"public\",kind=\"protocol_error\"}") == 1)
    }

    /// The streams of one connection share one scheduled check of their deadlines
    /// (`HTTP2StreamDeadlines`); each stream's must still pass at its own time, and only its own.
    @Test("each stream's response_header_timeout is its own: on one connection, two slow upstream answers get 504 after the route's 500 ms, while a stream answered in time and one on a route with the default timeout get 200")
    func responseHeaderTimeoutPerStream() throws {
        let base = "http://127.0.0.1:\(gateway.port)"
        // nghttp sends the four requests on one connection at once and prints when each head came.
        let result = try runCommand("/usr/bin/env", ["timeout", "20", "nghttp", "-v", base + "/hurried/delay/3000", base + "/hurried/delay/10",
                                                     base + "/hurried/delay/2000", base + "/public/delay/1500"])
        var statuses: [String: (status: String, at: Double)] = [:]
        for line in result.stdout.split(separator: "\n") where line.contains(" :status: ") {
            guard let at = line.split(separator: "]").first.flatMap({ Double($0.dropFirst().trimmingCharacters(in: .whitespaces)) }),
                  let id = line.split(separator: "stream_id=").last?.split(separator: ")").first,
                  let status = line.split(separator: " ").last else { continue }
            statuses[String(id)] = (String(status), at)
        }
        #expect(statuses.mapValues(\.status) == ["13": "504", "15": "200", "17": "504", "19": "200"], "\(result.stdout.suffix(2000))")
        for id in ["13", "17"] {
            let at = statuses[id]?.at ?? 0
            #expect(at >= 0.45 && at < 1.4, "stream \(id)'s 504 came at \(at) s, not after the route's 500 ms")
        }
        #expect((statuses["19"]?.at ?? 0) >= 1.4, "the default-timeout stream did not wait for its upstream")
        #expect(try metric(#"portcullis_upstream_failures_total{route="hurried",kind="response_header_timeout"}"#) == 2)
    }

    // MARK: Protocol selection

    @Test("one plaintext port serves HTTP/2 with prior knowledge and HTTP/1.1 alike")
    func onePortServesBoth() throws {
        let h2 = try curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "http://127.0.0.1:\(gateway.port)/public/x"])
        #expect(h2.stdout == "2 200")
        let h1 = try gateway.request("GET", "/public/x", headers: [("Host", "gw.test")])
        #expect(h1.status == 200)
        #expect(try metric(#"portcullis_client_connections_total{protocol="h2"}"#) ?? 0 >= 1)
        #expect(try metric(#"portcullis_client_connections_total{protocol="http/1.1"}"#) ?? 0 >= 1)
    }

    @Test("a validly signed token whose exp lies past the year 2262 (9999999999) is served over HTTP/2, and the gateway lives on")
    func farFutureExpiry() throws {
        // The stream is watched until its token ends; exp × 10^9 nanoseconds used to overflow and trap.
        let token = try issuer.token(sub: "dora", extra: ["exp": .integer(9_999_999_999)])
        for _ in 0..<2 {
            let admitted = try curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(token)",
                                     "http://127.0.0.1:\(gateway.port)/api/far"])
            #expect(admitted.stdout == "200", "\(admitted.stdout) \(admitted.stderr)")
        }
        #expect(gateway.process.isRunning)
    }

    @Test("an HTTP/2 request to a JWT route is refused without a token and forwarded with the verified identity")
    func jwtRouteOverHTTP2() throws {
        let refused = try curl(["--http2-prior-knowledge", "-D", "-", "http://127.0.0.1:\(gateway.port)/api/orders"])
        #expect(refused.stdout.hasPrefix("HTTP/2 401"))
        #expect(refused.stdout.contains(#"www-authenticate: Bearer realm="portcullis""#))
        #expect(refused.stdout.contains(#""error":"invalid_request""#) || refused.stdout.contains(#""error":"unauthorized""#))

        let token = try issuer.token(sub: "carol")
        let before = upstream.requestCount
        let admitted = try curl(["--http2-prior-knowledge", "-H", "Authorization: Bearer \(token)", "-H", "X-Auth-Subject: mallory",
                                 "http://127.0.0.1:\(gateway.port)/api/orders?id=1"])
        #expect(admitted.stdout.contains(#""x-auth-subject":["carol"]"#))
        #expect(!admitted.stdout.contains("mallory"))
        #expect(admitted.stdout.contains(#""uri":"\/api\/orders?id=1""#) || admitted.stdout.contains(#""uri":"/api/orders?id=1""#))
        #expect(upstream.requestCount == before + 1)
    }

    @Test("the gateway offers extended CONNECT (RFC 8441); one for a protocol other than websocket is refused with 400, one for websocket on a route without websocket with 403, and neither reaches the upstream")
    func extendedConnectRefusals() throws {
        let token = try issuer.token(sub: "tunnel")
        let before = upstream.requestCount
        let other = try peer("extended-connect", "/public/tunnel", "connect-udp")
        #expect((other["settings"] as? [String: Any])?["8"] as? Int == 1, "\(other)")
        #expect((other["status"] as? [String: Any])?["1"] as? String == "400", "\(other)")
        #expect(((other["bodies"] as? [String: Any])?["1"] as? String ?? "").contains("may only open a WebSocket"), "\(other)")
        let notEnabled = try peer("extended-connect", "/api/socket", "websocket", "authorization=Bearer \(token)")
        #expect((notEnabled["status"] as? [String: Any])?["1"] as? String == "403", "\(notEnabled)")
        #expect(((notEnabled["bodies"] as? [String: Any])?["1"] as? String ?? "").contains("websocket_not_enabled"), "\(notEnabled)")
        #expect(upstream.requestCount == before)
    }

    @Test("with http2.extended_connect: false the gateway does not offer extended CONNECT and resets a stream that tries it (PROTOCOL_ERROR)")
    func extendedConnectOff() async throws {
        let off = try await oneRouteGateway(settings: "http2: {extended_connect: false}", route: "websocket: true")
        defer { Task { await off.stop() } }
        let result = try runCommand("/usr/bin/env", ["python3", Self.peerScript, "extended-connect", String(off.port), "/ws", "websocket"])
        let seen = try #require(try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
        #expect((seen["settings"] as? [String: Any])?["8"] == nil, "\(seen)")
        #expect((seen["resets"] as? [String: Any])?["1"] as? Int == 1, "\(seen)")
        #expect((seen["status"] as? [String: Any])?["1"] == nil, "\(seen)")
    }

    @Test("many streams on few connections all get their own answers (h2load)")
    func multiplexedLoad() throws {
        let token = try issuer.token(sub: "load")
        let result = try runCommand("/usr/bin/env", ["h2load", "-n", "400", "-c", "4", "-m", "10", "-H", "authorization: Bearer \(token)",
                                                     "http://127.0.0.1:\(gateway.port)/api/load"])
        #expect(result.stdout.contains("requests: 400 total, 400 started, 400 done, 400 succeeded"), "\(result.stdout)")
        #expect(result.stdout.contains("status codes: 400 2xx"), "\(result.stdout)")
    }

    @Test("a gRPC call the gateway refuses gets grpc-status 16 in trailers, not a JSON 401")
    func grpcShapedRefusal() throws {
        let seen = try peer("request", "/api/pkg.Service/Method", "content-type=application/grpc", "te=trailers")
        let status = seen["status"] as? [String: String]
        let trailers = seen["trailers"] as? [String: [String: String]]
        #expect(status?["1"] == "200")
        #expect(trailers?["1"]?["grpc-status"] == "16")
        #expect(trailers?["1"]?["grpc-message"]?.contains("token") == true)
        #expect((seen["bodies"] as? [String: String])?["1"] == nil)
    }

    @Test("over HTTP/2 a CORS preflight is answered 204 without a body before authentication, and a 401 carries the CORS fields")
    func corsOverHTTP2() throws {
        let before = upstream.requestCount
        let preflight = try curl(["--http2-prior-knowledge", "-D", "-", "-X", "OPTIONS", "-H", "Origin: https://app.test",
                                  "-H", "Access-Control-Request-Method: GET", "http://127.0.0.1:\(gateway.port)/cors/x"])
        #expect(preflight.stdout.hasPrefix("HTTP/2 204"), "\(preflight.stdout)")
        #expect(preflight.stdout.contains("access-control-allow-origin: https://app.test"))
        #expect(!preflight.stdout.contains("content-type"))
        #expect(!preflight.stdout.contains("{"))
        let refused = try curl(["--http2-prior-knowledge", "-D", "-", "-H", "Origin: https://app.test", "http://127.0.0.1:\(gateway.port)/cors/x"])
        #expect(refused.stdout.hasPrefix("HTTP/2 401"))
        #expect(refused.stdout.contains("access-control-allow-origin: https://app.test"))
        #expect(upstream.requestCount == before)
    }

    @Test("clients that vanish with streams in flight do not bring the node down")
    func clientsVanishMidStream() async throws {
        for _ in 0..<3 {
            _ = try runCommand("/usr/bin/env", ["h2load", "-D", "1", "-c", "4", "-m", "20", "http://127.0.0.1:\(gateway.port)/public/delay/1500"])
            try await Task.sleep(for: .milliseconds(1000))
        }
        #expect(gateway.process.isRunning, "the gateway died:\n\(gateway.process.output.suffix(2000))")
        #expect(try gateway.request("GET", "/public/after", headers: [("Host", "gw.test")]).status == 200)
    }

    // MARK: Request-head rules

    @Test("a stream whose :authority and Host disagree is reset and reaches no upstream")
    func authorityHostMismatch() throws {
        let before = upstream.requestCount
        let seen = try peer("authority", "b.test")
        #expect((seen["resets"] as? [String: Int])?["1"] == 1) // PROTOCOL_ERROR
        #expect((seen["status"] as? [String: String])?["1"] == nil)
        #expect(upstream.requestCount == before)
        #expect(try metric("portcullis_http2_malformed_streams_total") ?? 0 >= 1)
        let agreeing = try peer("authority", "A.TEST")
        #expect((agreeing["status"] as? [String: String])?["1"] == "200")
    }

    /// The build before closed the whole connection (GOAWAY) for one malformed stream, cutting the
    /// client's other streams with it.
    @Test("a malformed request resets its own stream (PROTOCOL_ERROR) and reaches no upstream; the stream beside it on the connection completes")
    func malformedStreamLeavesOthers() throws {
        let before = upstream.requestCount
        let malformedBefore = try metric("portcullis_http2_malformed_streams_total") ?? 0
        let seen = try peer("malformed-beside")
        #expect((seen["resets"] as? [String: Int])?["3"] == 1, "\(seen)") // PROTOCOL_ERROR
        #expect(seen["goaway"] is NSNull, "\(seen)")
        #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
        #expect((seen["status"] as? [String: String])?["3"] == nil)
        #expect(upstream.requestCount == before + 1)
        #expect(try metric("portcullis_http2_malformed_streams_total") == malformedBefore + 1)
        #expect(try metric("portcullis_http2_connection_errors_total") ?? 0 == 0)
    }

    /// A raw request: exactly these fields, and `body` in one DATA frame after HEADERS that do not
    /// end the stream; then a GET of /after on the same connection.
    func raw(_ fields: [(String, String)], body: String? = nil) throws -> [String: Any] {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: fields.map { [$0.0, $0.1] }), as: UTF8.self)
        return try body.map { try peer("raw", json, $0) } ?? peer("raw", json)
    }

    static func request(_ method: String, _ path: String, _ extra: [(String, String)] = []) -> [(String, String)] {
        [(":method", method), (":scheme", "http"), (":path", path), (":authority", "gw.test")] + extra
    }

    /// The build before passed raw spaces and non-ASCII bytes in `:path`, its query included, into
    /// the HTTP/1.1 upstream's request line as sent — bytes the HTTP/1.1 listener refuses (an
    /// attacker review).
    @Test("a :path with a raw space or non-ASCII byte, in its path or its query, is malformed: its stream is reset before any upstream, and the next request on the connection is answered", arguments: [
        "/public/x?q=\u{E9}", "/public/\u{E9}", "/public/x?a b",
    ])
    func pathWithRawBytesIsMalformed(_ path: String) throws {
        let before = upstream.requestCount
        let seen = try raw(Self.request("GET", path))
        #expect((seen["resets"] as? [String: Int])?["1"] == 1, "\(seen)") // PROTOCOL_ERROR
        #expect((seen["status"] as? [String: String])?["3"] == "200", "\(seen)")
        #expect(upstream.requestCount == before + 1, "the malformed request reached the upstream")
    }

    /// Methods are case-sensitive, so the build before routed `delete` past a route listing
    /// `DELETE` (with its authentication) to a route without a method list on the same prefix,
    /// and forwarded it as sent; frameworks that upper-case the method (Werkzeug, Express) ran it
    /// as a DELETE without a token (an attacker review). The HTTP/1.1 listener refuses it (400).
    @Test("over HTTP/2, a :method with a lower-case letter (delete, Delete, get) is malformed: its stream is reset before any upstream, so it cannot pass a route that lists DELETE with authentication to a route on the same prefix that lists no methods; DELETE without a token is 401, with one 200")
    func lowerCaseMethodIsMalformed() async throws {
        let issuer = self.issuer, upstreamAddress = upstream.address
        let shared = try await GatewayProcess.start { port, adminPort, directory in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            \((try? issuer.issuersYAML(directory: directory)) ?? "")
            routes:
              - {name: orders-write, path_prefix: /orders, methods: [POST, PUT, PATCH, DELETE], auth: {type: jwt}, upstream: {targets: [\(upstreamAddress)]}}
              - {name: orders-read, path_prefix: /orders, upstream: {targets: [\(upstreamAddress)]}}
            """
        }
        try await withCleanup(shared, { await $0.stop() }) { shared in
            func raw(_ fields: [(String, String)]) throws -> [String: Any] {
                let json = String(decoding: try JSONSerialization.data(withJSONObject: fields.map { [$0.0, $0.1] }), as: UTF8.self)
                return try Self.peer("raw", port: shared.port, [json])
            }
            for method in ["delete", "Delete", "get"] {
                let before = upstream.requestCount
                let seen = try raw(Self.request(method, "/orders/42"))
                #expect((seen["resets"] as? [String: Int])?["1"] == 1, "\(method): \(seen)") // PROTOCOL_ERROR
                // The GET of /after on the same connection is answered (no route: 404).
                #expect((seen["status"] as? [String: String]) == ["3": "404"], "\(method): \(seen)")
                #expect(upstream.requestCount == before, "\(method): the request reached the upstream")
            }
            #expect((try raw(Self.request("DELETE", "/orders/42"))["status"] as? [String: String])?["1"] == "401")
            let token = try issuer.token(scope: "orders:write")
            let allowed = try raw(Self.request("DELETE", "/orders/42", [("authorization", "Bearer \(token)")]))
            #expect((allowed["status"] as? [String: String])?["1"] == "200", "\(allowed)")
        }
    }

    /// The build before took any token as `:method` (an attacker review sent 16 KB ones: logged,
    /// recorded in spans and sent upstream whole, making 7 MB export batches).
    @Test("a :method longer than 32 bytes is malformed: its stream is reset before any upstream; a 32-byte one passes", arguments: [33, 16_000])
    func overlongMethodIsMalformed(_ length: Int) throws {
        let before = upstream.requestCount
        let seen = try raw(Self.request(String(repeating: "M", count: length), "/public/x"))
        #expect((seen["resets"] as? [String: Int])?["1"] == 1, "\(seen)") // PROTOCOL_ERROR
        #expect(upstream.requestCount == before + 1, "only the request after it reached the upstream")
        let allowed = try raw(Self.request(String(repeating: "M", count: 32), "/public/x"))
        #expect((allowed["status"] as? [String: String])?["1"] != nil && (allowed["resets"] as? [String: Int])?["1"] == nil, "\(allowed)")
    }

    /// HTTP/2 frames a body by END_STREAM; HTTP/1.1 by a declared length. The build before wrote
    /// a GET's DATA after its head with neither, so the upstream read it as a second request:
    /// any client could smuggle a request past admission (one to a JWT route, with identity
    /// headers of its choosing) or capture the next client's request on the pooled connection.
    @Test("DATA on a GET, HEAD, DELETE or TRACE without content-length reaches an HTTP/1.1 upstream as that request's chunked body, never as a second request (HTTP/2 downgrade smuggling)", arguments: ["GET", "HEAD", "DELETE", "TRACE"])
    func bodyWithoutLengthIsNotSmuggled(_ method: String) throws {
        let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: gw.test\r\nX-Auth-Subject: admin\r\n\r\n"
        let before = upstream.requestCount
        let seen = try raw(Self.request(method, "/public/smuggle"), body: smuggled)
        let status = seen["status"] as? [String: String]
        #expect(status?["1"] == "200" && status?["3"] == "200", "\(seen)")
        #expect(upstream.requestCount == before + 2, "the upstream parsed \(upstream.requestCount - before) requests from 2")
        if method != "HEAD" {
            let echoed = try JSONSerialization.jsonObject(with: Data(((seen["bodies"] as? [String: String])?["1"] ?? "").utf8)) as? [String: Any]
            #expect(echoed?["body_bytes"] as? Int == smuggled.utf8.count, "\(echoed ?? [:])")
            #expect((echoed?["headers"] as? [String: [String]])?["transfer-encoding"] == ["chunked"], "\(echoed ?? [:])")
        }
    }

    /// swift-nio-http2's HTTP/2-to-HTTP/1 codec fails a stream whose head lacks `:authority` or
    /// `:path`; the stream closed on that first read, and a debug build of the build before
    /// stopped on an assertion in swift-nio-http2's connection manager, taking every connection
    /// with it (a release build compiles the assertion out).
    @Test("a request with Host and no :authority is served; one with neither is reset, a plain CONNECT is answered 405, and the gateway and the connection live on")
    func headsTheCodecCannotRead() throws {
        let hostOnly = try raw([(":method", "GET"), (":scheme", "http"), (":path", "/public/host-only"), ("host", "gw.test")])
        #expect((hostOnly["status"] as? [String: String])?["1"] == "200", "\(hostOnly)")
        let neither = try raw([(":method", "GET"), (":scheme", "http"), (":path", "/public/no-authority")])
        #expect((neither["resets"] as? [String: Int])?["1"] == 1, "\(neither)") // PROTOCOL_ERROR
        let connect = try raw([(":method", "CONNECT"), (":authority", "example.test:443")])
        #expect((connect["status"] as? [String: String])?["1"] == "405", "\(connect)")
        #expect((connect["bodies"] as? [String: String])?["1"]?.contains("method_not_allowed") == true, "the 405 lost its body: \(connect)")
        for seen in [hostOnly, neither, connect] {
            #expect((seen["status"] as? [String: String])?["3"] == "200", "the connection did not live on: \(seen)")
        }
        #expect(gateway.process.isRunning)
    }

    @Test("repeated equal content-lengths reach the upstream as one number; a signed or disagreeing length, a :method that is not a token and a field value with a control character or outer whitespace are reset before any upstream")
    func headsThatMeanSomethingElseInHTTP1() throws {
        let repeated = try raw(Self.request("POST", "/public/length", [("content-length", "5, 5")]), body: "hello")
        let echoed = try JSONSerialization.jsonObject(with: Data(((repeated["bodies"] as? [String: String])?["1"] ?? "").utf8)) as? [String: Any]
        #expect((echoed?["headers"] as? [String: [String]])?["content-length"] == ["5"], "\(repeated)")
        #expect(echoed?["body_bytes"] as? Int == 5)
        let cases: [[(String, String)]] = [
            Self.request("POST", "/public/x", [("content-length", "+5")]),
            [(":method", "G/E@T"), (":scheme", "http"), (":path", "/public/x"), (":authority", "gw.test")],
            Self.request("GET", "/public/x", [("x-a", "a\u{01}b")]),
            Self.request("GET", "/public/x", [("x-a", " padded")]),
        ]
        for fields in cases {
            let before = upstream.requestCount
            let seen = try raw(fields, body: fields.contains { $0.0 == "content-length" } ? "hello" : nil)
            #expect((seen["resets"] as? [String: Int])?["1"] == 1, "\(fields): \(seen)")
            #expect(upstream.requestCount == before + 1, "\(fields) reached the upstream")
        }
    }

    @Test("two cookie fields reach an HTTP/1.1 upstream as one Cookie field")
    func cookiesAreJoined() throws {
        let seen = try peer("cookies")
        let body = (seen["bodies"] as? [String: String])?["1"] ?? ""
        #expect(body.contains(#""cookie":["a=1; b=2"]"#), "\(body)")
    }

    @Test("a response's x-request-id is not put in the connection's HPACK table: after 5 responses the table holds the fields that repeat and none of the 5 request ids")
    func requestIDsStayOutOfTheHPACKTable() throws {
        let seen = try peer("request-ids", "5")
        let statuses = (seen["status"] as? [String: String]) ?? [:]
        #expect(statuses.count == 5 && statuses.values.allSatisfy { $0 == "200" }, "\(statuses)")
        let ids = (seen["request_ids"] as? [String]) ?? []
        #expect(Set(ids).count == 5, "\(ids)")
        let table = (seen["dynamic_table"] as? [[String]]) ?? []
        #expect(!table.isEmpty, "the gateway indexes nothing at all")
        #expect(!table.contains { $0.first == "x-request-id" }, "\(table)")
    }

    // MARK: Attacks

    @Test("rapid reset (CVE-2023-44487): a client resetting streams as fast as it opens them is cut with ENHANCE_YOUR_CALM")
    func rapidReset() throws {
        let seen = try peer("rapid-reset", "1000")
        #expect(seen["goaway"] as? Int == 11)
        // The node still serves others.
        #expect(try gateway.request("GET", "/public/after", headers: [("Host", "gw.test")]).status == 200)
    }

    /// swift-nio-http2's rapid-reset limit counts every RST_STREAM: the build before closed this
    /// connection with ENHANCE_YOUR_CALM after 200 such resets, and the stream beside them with it.
    @Test("a client that resets each stream once its response has ended, as gRPC clients reset calls whose status came first, is not taken for rapid reset: 400 such streams are answered and a stream open beside them completes")
    func resetAfterResponseIsNotRapidReset() throws {
        let errorsBefore = try metric("portcullis_http2_connection_errors_total") ?? 0
        let seen = try peer("reset-after-response", "400")
        #expect(seen["goaway"] as? Int == nil, "\(seen)")
        #expect(seen["answered"] as? Int == 400, "\(seen)")
        #expect(seen["first"] as? String == "200", "the stream beside them: \(seen)")
        #expect(try metric("portcullis_http2_connection_errors_total") == errorsBefore)
    }

    @Test("a CONTINUATION flood is cut before the header block completes")
    func continuationFlood() throws {
        let before = upstream.requestCount
        let seen = try peer("continuation", "400")
        #expect(seen["goaway"] as? Int != nil)
        #expect((seen["sent"] as? Int ?? 0) <= (seen["frames"] as? Int ?? 0))
        #expect((seen["status"] as? [String: String])?["1"] == nil)
        #expect(upstream.requestCount == before)
    }

    @Test("PING and SETTINGS floods are cut with ENHANCE_YOUR_CALM", arguments: ["ping-flood", "settings-flood"])
    func controlFrameFloods(mode: String) throws {
        let seen = try peer(mode, "1000")
        #expect(seen["goaway"] as? Int == 11)
    }

    /// swift-nio-http2 queues every frame for a stream whose reads the gateway holds, and flow
    /// control bounds DATA only: the build before took WINDOW_UPDATE frames without limit (an
    /// attacker review grew it by hundreds of MB in seconds on a held stream).
    @Test("a client flooding WINDOW_UPDATE frames on a stream has its connection closed with GOAWAY ENHANCE_YOUR_CALM once past the stream's budget (16, and what the DATA sent on it earns: two a frame, one a KiB), counted as a connection error; a client updating a small window through a large download is within it")
    func windowUpdateFlood() throws {
        let before = try metric("portcullis_http2_connection_errors_total") ?? 0
        let seen = try peer("window-flood", "5000")
        #expect(seen["closed"] as? Bool == true && seen["goaway"] as? Int == 11, "\(seen)")
        #expect((seen["sent"] as? Int ?? 0) < 5000, "\(seen)")
        #expect(try metric("portcullis_http2_connection_errors_total") == before + 1)
        // nghttp with a 16 KiB stream window updates it every 8 KiB or so it consumes: hundreds of
        // updates on one stream, all earned.
        let download = try runCommand("/usr/bin/env", ["timeout", "20", "nghttp", "-n", "-v", "-w", "14", "http://127.0.0.1:\(gateway.port)/bytes/8000000"])
        let updates = download.stdout.split(separator: "\n").filter { $0.contains("send WINDOW_UPDATE frame") && $0.contains("stream_id=13") }.count
        #expect(updates > 200, "\(updates) updates: \(download.stdout.suffix(500))")
        #expect(download.stdout.contains(":status: 200") && !download.stdout.contains("recv GOAWAY") && !download.stdout.contains("recv RST_STREAM"),
                "\(download.stdout.suffix(800))")
        #expect(try metric("portcullis_http2_connection_errors_total") == before + 1)
    }

    /// Go's net/http updates both windows for every 4 KiB its application reads
    /// (`inflowMinRefresh`), so a body read through a 4 KiB buffer brings four connection-level and
    /// four stream-level updates per 16 KiB DATA frame, the stream's after its end too. The build
    /// before credited two per frame, and closed such a client's connection after 7 MB.
    @Test("a client updating its windows for every 4 KiB it reads, as Go's net/http does, downloads 16 MB and keeps its connection: its updates are within both budgets")
    func goStyleWindowUpdatesAreWithinBudget() throws {
        let before = try metric("portcullis_http2_connection_errors_total") ?? 0
        let seen = try peer("chunked-reader", "/bytes/16000000", "4096")
        #expect(seen["goaway"] == nil || seen["goaway"] is NSNull, "\(seen)")
        #expect(seen["received"] as? Int == 16_000_000, "\(seen)")
        #expect((seen["updates"] as? Int ?? 0) >= 2 * 3906, "\(seen)")
        #expect((seen["status"] as? [String: Any])?["3"] as? String == "200", "the request after the download: \(seen)")
        #expect(try metric("portcullis_http2_connection_errors_total") == before)
    }

    /// Each WINDOW_UPDATE of 1 made the gateway send a 1-byte DATA frame that earned two: on the
    /// build before, the budget paid for itself and a connection dribbling so kept a core busy
    /// for as long as the response lasted (an attacker review: 213 000 updates a second).
    @Test("a client keeping a stream's window at a byte, updating it by one for each 1-byte frame it gets, is cut with GOAWAY ENHANCE_YOUR_CALM after its 16 updates: frames its window cut short earn only by their bytes (one update per 512); a client whose windows are 1 KiB (nghttp -w 10 -W 10) downloads 4 MB")
    func oneByteWindowDribbleIsCut() throws {
        let before = try metric("portcullis_http2_connection_errors_total") ?? 0
        let seen = try peer("dribble", "/bytes/1000000", "3000")
        #expect(seen["goaway"] as? Int == 11, "\(seen)")
        #expect((seen["frames"] as? Int ?? 0) < 100, "\(seen)")
        #expect(try metric("portcullis_http2_connection_errors_total") == before + 1)
        // nghttp2 updates each window by about 1 KiB at a time here (some 7 800 updates in all),
        // each frame the window cut short earning two updates by its bytes.
        let small = try runCommand("/usr/bin/env", ["timeout", "30", "nghttp", "-n", "-v", "-w", "10", "-W", "10", "http://127.0.0.1:\(gateway.port)/bytes/4000000"])
        let updates = small.stdout.split(separator: "\n").filter { $0.contains("send WINDOW_UPDATE frame") }.count
        #expect(updates > 6000, "\(updates) updates: \(small.stdout.suffix(500))")
        #expect(small.stdout.contains(":status: 200") && !small.stdout.contains("recv GOAWAY") && small.status == 0, "\(small.stdout.suffix(800))")
        #expect(try metric("portcullis_http2_connection_errors_total") == before + 1)
    }

    /// swift-nio-http2 remembers 32 streams it reset by default, and takes DATA on a closed stream
    /// it does not remember for a connection error: on the build before, a client whose uploads on
    /// 40 streams were answered early (401 here; 413 or 502 alike) lost its connection, and every
    /// other stream on it, when their bodies' bytes in flight arrived (an attacker review).
    @Test("a client whose uploads on 40 streams are each answered before their bodies (401) keeps its connection when the bodies' bytes in flight arrive: the request after them is answered")
    func bodiesOfEarlyAnsweredStreamsKeepTheConnection() throws {
        let before = try metric("portcullis_http2_connection_errors_total") ?? 0
        let seen = try peer("early-answered", "/api/upload", "40")
        let statuses = seen["status"] as? [String: String] ?? [:]
        #expect(statuses.filter { $0.value == "401" }.count == 40, "\(statuses)")
        #expect(seen["goaway"] is NSNull && seen["closed"] as? Bool == false, "\(seen["goaways"] ?? "")")
        #expect(statuses[String(seen["after"] as? Int ?? 0)] == "200", "\(statuses)")
        #expect(try metric("portcullis_http2_connection_errors_total") == before)
    }

    /// swift-nio-http2 limits none of these frames: on the build before, both floods ran to
    /// their end and the request after them was answered on the same connection. GOAWAY frames
    /// (an attacker review: 80 times the sender's CPU alone, and between 1-byte DATA frames they
    /// kept `HTTP2DataFrameJoiner` from joining any) ran to their end too, and so did empty
    /// extension frames, which the guard dropped without counting (another review: a request of
    /// another client took 23 s behind six such connections on a debug build).
    @Test("a client flooding WINDOW_UPDATE frames on the connection, RST_STREAM and WINDOW_UPDATE frames on a closed stream, GOAWAY frames between 1-byte DATA frames, or empty extension frames (PRIORITY_UPDATE, unknown types), is cut with GOAWAY ENHANCE_YOUR_CALM once past the connection's budget (100, and what its streams and the DATA sent earn), counted as a connection error; the node serves others")
    func connectionLevelFloods() throws {
        let before = try metric("portcullis_http2_connection_errors_total") ?? 0
        for mode in ["connection-flood", "closed-stream-flood", "goaway-flood", "extension-frames"] {
            let seen = try peer(mode, "5000")
            #expect(seen["goaway"] as? Int == 11, "\(mode): \(seen)")
            let sent = seen["sent"] as? Int ?? 0
            // 100 allowed, and with the closed stream 4 earned by stream 1 and what its answer's
            // DATA earned; what was already on its way when the GOAWAY came is sent too.
            #expect(sent > 100 && sent < 2000, "\(mode): \(sent) frames sent")
            #expect((seen["status"] as? [String: Any])?["3"] == nil, "\(mode): the request after the flood was answered: \(seen)")
        }
        #expect(try metric("portcullis_http2_connection_errors_total") == before + 4)
        #expect(try gateway.request("GET", "/public/after", headers: [("Host", "gw.test")]).status == 200)
    }

    /// Each stream to an HTTP/1.1 upstream holds an upstream connection of its own: the build
    /// before let 205 HTTP/2 connections of 100 slow streams each take every file descriptor the
    /// gateway had, past `max_connections` (an attacker review).
    @Test("over HTTP/2, each request to an HTTP/1.1 upstream counts toward limits.max_connections while its stream is open: with a limit of 6, one connection's 10 slow requests get five 200s and five 503s with Retry-After, and the slots come back when the streams close")
    func streamsCountTowardMaxConnections() async throws {
        let limited = try await oneRouteGateway(settings: "event_loops: 1\nlimits: {max_connections: 6}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            /// Each stream's response head (`:status` and fields).
            func streams(_ count: Int) throws -> [String: [String: String]] {
                let result = try runCommand("/usr/bin/env", ["python3", Self.peerScript, "streams", String(limited.port), String(count)])
                let seen = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
                return seen?["heads"] as? [String: [String: String]] ?? [:]
            }
            let first = try streams(10)
            let refused = first.values.filter { $0[":status"] == "503" }
            #expect(first.values.filter { $0[":status"] == "200" }.count == 5 && refused.count == 5, "\(first)")
            #expect(refused.allSatisfy { $0["retry-after"] == "1" }, "\(refused)")
            #expect(PrometheusText.sample(try limited.metrics(), "portcullis_rejected_connections_total") == 5)
            #expect(try await Poll.until { PrometheusText.sample(try limited.metrics(), "portcullis_open_connections") == 0 })
            let second = try streams(5)
            #expect(second.values.map { $0[":status"] } == Array(repeating: "200", count: 5), "the slots did not come back: \(second)")
        }
    }

    /// The build before applied the minimum body rate to HTTP/1.1 only: a stream whose body
    /// stopped held its upstream connection, and a `max_connections` slot, for as long as the
    /// client liked.
    @Test("over HTTP/2, a stream whose request body stops coming is answered 408 once it falls below limits.request_body_min_rate after the grace, and counted; the connection's other streams go on")
    func stalledRequestBodyIsCut() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {request_body_grace: 1s, request_body_min_rate: 256}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let seen = try Self.peer("stalled-body", port: limited.port, ["/echo", "8"])
            let status = seen["status"] as? [String: String]
            #expect(status?["1"] == "408", "\(seen)")
            let waited = seen["waited"] as? Double ?? .infinity
            // The grace (1 s) plus one byte at 256 B/s, and a loaded machine's slack.
            #expect(waited > 0.9 && waited < 5, "answered after \(waited) s")
            #expect(status?["3"] == "200", "the connection did not go on: \(seen)")
            #expect(PrometheusText.sample(try limited.metrics(), #"portcullis_slow_clients_total{direction="request_body"}"#) == 1)
        }
    }

    /// The body rate is not applied to gRPC calls, whose client streams may rightly be idle; the
    /// first version of it took a gRPC content-type for a call on any route, so a stream to an
    /// HTTP/1.1 upstream dodged the rate by claiming one (an attacker review: 59 such streams held
    /// every `max_connections` slot for 59 bytes every 15 s).
    @Test("a gRPC content-type does not take a stream to an HTTP/1.1 upstream past the body rate: its stalled body gets DEADLINE_EXCEEDED and is counted")
    func grpcContentTypeDoesNotDodgeTheBodyRate() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {request_body_grace: 1s, request_body_min_rate: 256}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let seen = try Self.peer("stalled-body", port: limited.port, ["/echo", "8", "content-type=application/grpc"])
            #expect((seen["trailers"] as? [String: [String: String]])?["1"]?["grpc-status"] == "4", "\(seen)")
            let waited = seen["waited"] as? Double ?? .infinity
            #expect(waited > 0.9 && waited < 5, "answered after \(waited) s")
            #expect(PrometheusText.sample(try limited.metrics(), #"portcullis_slow_clients_total{direction="request_body"}"#) == 1)
        }
    }

    /// A response under the stream's 8 KiB never makes the stream unwritable: the build before
    /// left a stream whose client never took such a response's bytes open for good, each holding
    /// some 16 KB once its `max_connections` slot came back with the exchange (an attacker review:
    /// 5 000 such streams, 74 MB, none ever reset).
    @Test("a stream whose client never takes a small response's bytes is reset after limits.response_write_timeout from the response's end, and counted")
    func untakenSmallResponseIsCut() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {response_write_timeout: 1s}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let seen = try Self.peer("unread", port: limited.port, ["/echo", "8"])
            #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
            #expect((seen["resets"] as? [String: Int])?["1"] == 8, "not reset with CANCEL: \(seen)")
            let waited = seen["waited"] as? Double ?? .infinity
            #expect(waited > 0.9 && waited < 5, "reset after \(waited) s")
            #expect(PrometheusText.sample(try limited.metrics(), #"portcullis_slow_clients_total{direction="response"}"#) == 1)
        }
    }

    /// The build before applied the response-write deadline to the connection only: a client
    /// that kept one stream's window shut, reading everything else, held that stream's upstream
    /// connection indefinitely.
    @Test("over HTTP/2, a stream whose client keeps its window shut on a response is reset after limits.response_write_timeout, and counted")
    func shutStreamWindowIsCut() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {response_write_timeout: 1s}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let seen = try Self.peer("unread", port: limited.port, ["/bytes/1048576", "8"])
            #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
            #expect((seen["resets"] as? [String: Int])?["1"] == 8, "not reset with CANCEL: \(seen)")
            #expect(seen["closed"] as? Bool == false, "the connection closed: \(seen)")
            let waited = seen["waited"] as? Double ?? .infinity
            #expect(waited > 0.9 && waited < 5, "reset after \(waited) s")
            #expect(PrometheusText.sample(try limited.metrics(), #"portcullis_slow_clients_total{direction="response"}"#) == 1)
        }
    }

    /// swift-nio-http2 makes a stream unwritable by its bytes, not its writes: the build before
    /// wrote each of an upstream's 1-byte bodies as a write of its own, 8 196 of them waiting on a
    /// stream whose client kept its window shut (what that held: docs/benchmarks.md), and sent
    /// them as as many DATA frames.
    @Test("an upstream's 20 000 one-byte chunks to a client whose window is shut wait as a few joined writes, not one each: once the window opens the client gets all 20 000 bytes in a few dozen DATA frames")
    func smallResponseWritesAreJoined() throws {
        // The window opens after 3 s: the debug build reading the 20 000 chunks on a loaded CI
        // machine took more than the 1 s this waited first, and what came after the window had
        // opened went out as it came (256 frames in one run).
        let seen = try peer("window-later", "/tiny/20000", "3")
        #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
        #expect(seen["body_bytes"] as? Int == 20_000, "\(seen["body_bytes"] ?? "none")")
        let frames = (seen["data_frames"] as? [String: Int])?["1"] ?? .max
        #expect(frames < 200, "\(frames) DATA frames for 20 000 bytes")
    }

    /// Joined writes of small bodies wait one at a time, and each one the client takes starts the
    /// response-write time over: a stream of small messages to a client that reads them is never
    /// cut. (A review found the deadline could be kept across completed writes when bytes were
    /// held at each completion; this run does not reproduce that timing, it guards the property.)
    @Test("a response streaming small bodies to a client that reads them goes on past limits.response_write_timeout, never reset")
    func healthyStreamOfSmallBodiesIsNotCut() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {response_write_timeout: 1s}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let result = try runCommand("/usr/bin/env", ["curl", "-s", "--http2-prior-knowledge", "--max-time", "3",
                                                         "http://127.0.0.1:\(limited.port)/drip/1"])
            let ticks = result.stdout.split(separator: "\n").count
            #expect(result.status == 28, "curl ended with \(result.status) after \(ticks) ticks, not at its own time limit")
            #expect(ticks > 300, "\(ticks) ticks in 3 s")
            #expect(PrometheusText.sample(try limited.metrics(), #"portcullis_slow_clients_total{direction="response"}"#) == 0)
        }
    }

    /// The build before passed each DATA frame on as a write (and a chunk) of its own: a window of
    /// 1-byte frames read at once became 65 535 writes waiting on the upstream connection.
    @Test("a request body of 2 000 one-byte DATA frames read at once reaches an HTTP/1.1 upstream joined, in a few chunks, every byte of it")
    func smallRequestFramesAreJoined() throws {
        let seen = try peer("one-byte-body", "/echo", "2000")
        #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
        let body = try #require((seen["bodies"] as? [String: String])?["1"])
        let echoed = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(echoed["body_bytes"] as? Int == 2000)
        let parts = echoed["body_parts"] as? Int ?? .max
        #expect(parts < 100, "the upstream read the body in \(parts) parts")
    }

    /// The build before counted a stream to an HTTP/1.1 upstream toward `max_connections` until the
    /// stream closed: a client that never took the last bytes of small responses (its window
    /// shut) held a slot per stream, with no upstream connection behind it, for as long as it liked.
    @Test("a stream to an HTTP/1.1 upstream gives its max_connections slot back when its exchange ends, not when a client that keeps its window shut lets the stream close: three such streams, then another client is served")
    func slotsComeBackWithTheExchange() async throws {
        let limited = try await oneRouteGateway(settings: "limits: {max_connections: 4}")
        try await withCleanup(limited, { await $0.stop() }) { limited in
            let seen = try Self.peer("hold-small", port: limited.port, ["/echo", "3"])
            #expect((seen["status"] as? [String: String]) == ["1": "200", "3": "200", "5": "200"], "\(seen)")
            #expect((seen["bodies"] as? [String: String])?.isEmpty == true, "the held responses' bodies arrived: \(seen)")
            let second = seen["second"] as? [String: Any]
            #expect((second?["status"] as? [String: String])?["1"] == "200", "the next client was not served: \(second ?? [:])")
        }
    }

    /// swift-nio-http2 skips a frame of a type it does not know without discarding the bytes it
    /// read past, while a frame remains incomplete: the build before kept every byte of such
    /// frames a client sent with each write ending inside one (1.5 GB from one connection in 10 s
    /// in an attacker review).
    @Test("a client sending 48 MiB in three extension frames, every write ending inside one, costs the gateway no memory for them; the connection goes on")
    func extensionFramesAreDropped() throws {
        let seen = try peer("extension-flood", "48", String(gateway.process.pid))
        #expect(seen["sent_mb"] as? Int ?? 0 >= 48, "\(seen)")
        #expect((seen["status"] as? [String: String])?["1"] == "200", "\(seen)")
        let grew = seen["grew"] as? Int ?? .max
        #expect(grew < 16 << 20, "the gateway grew by \(grew >> 20) MiB")
    }

    /// swift-nio-http2 gives its encoder the table the peer's SETTINGS allow, up to 4 GiB, and
    /// searches all of it for each field: the build before let a client make every header block
    /// the gateway sent it slower than the last, and keep every value in memory.
    @Test("a client announcing a 4 GiB HPACK table gets header blocks from a table of at most 4 096 bytes")
    func headerTableSizeClamped() throws {
        let seen = try peer("table-size")
        #expect(seen["responses"] as? Int == 20, "\(seen)")
        #expect(seen["largest_table_size"] as? Int == 4096, "\(seen)")
    }

    @Test("a client opening more streams than max_concurrent_streams is cut with GOAWAY (PROTOCOL_ERROR); the excess never reaches an upstream")
    func concurrentStreamLimit() throws {
        let before = upstream.requestCount
        let seen = try peer("streams", String(Self.maxStreams + 5))
        #expect(seen["goaway"] as? Int == 1, "\(seen)")
        #expect(seen["closed"] as? Bool == true)
        #expect(upstream.requestCount - before <= Self.maxStreams)
    }

    @Test("a header list over limits.max_header_bytes never reaches the upstream")
    func oversizedHeaderList() throws {
        let before = upstream.requestCount
        let big = String(repeating: "a", count: 40_000)
        let errors = try metric("portcullis_http2_connection_errors_total") ?? 0
        let result = try curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: \(big)",
                               "http://127.0.0.1:\(gateway.port)/public/big"])
        #expect(result.stdout != "200")
        #expect(result.status != 28, "curl timed out: the connection was left open after GOAWAY")
        #expect(upstream.requestCount == before)
        #expect(try metric("portcullis_http2_connection_errors_total") ?? 0 > errors)
    }
}

/// Settings that change the listener itself, each with its own gateway.
@Suite("HTTP/2 listener settings", .serialized)
struct HTTP2ListenerTests {
    @Test("a TLS listener offers h2 by ALPN; with http2 off it offers only http/1.1")
    func alpn() async throws {
        let upstream = try await TestUpstream.start()
        let authority = try TestCertificateAuthority.make(name: "Gateway CA")
        let leaf = try authority.issue("gateway")
        for enabled in [true, false] {
            let gateway = try await GatewayProcess.start { port, adminPort, _ in
                """
                listen: 127.0.0.1:\(port)
                admin_listen: 127.0.0.1:\(adminPort)
                http2: \(enabled)
                tls: {certificate_chain: \(leaf.certificate), private_key: \(leaf.privateKey)}
                routes:
                  - {name: public, path_prefix: /, upstream: {targets: [\(upstream.address)]}}
                """
            }
            let result = try runCommand("/usr/bin/env", ["curl", "-s", "--max-time", "10", "--http2", "--cacert", authority.certificate,
                                                         "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                                         "https://127.0.0.1:\(gateway.port)/x"])
            #expect(result.stdout == (enabled ? "2 200" : "1.1 200"), "http2: \(enabled)")
            await gateway.stop()
        }
        await upstream.stop()
    }

    @Test("with http2 off a plaintext listener answers the HTTP/2 preface as a malformed HTTP/1.1 request")
    func plaintextOff() async throws {
        let upstream = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            http2: {enabled: false}
            routes:
              - {name: public, path_prefix: /, upstream: {targets: [\(upstream.address)]}}
            """
        }
        let result = try runCommand("/usr/bin/env", ["curl", "-s", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null",
                                                     "-w", "%{http_version} %{http_code}", "http://127.0.0.1:\(gateway.port)/x"])
        #expect(result.stdout != "2 200")
        #expect(upstream.requestCount == 0)
        #expect(try gateway.request("GET", "/x", headers: [("Host", "gw.test")]).status == 200)
        await gateway.stop()
        await upstream.stop()
    }

    @Test("on SIGTERM an HTTP/2 connection gets GOAWAY and its stream in flight still completes")
    func goawayOnDrain() async throws {
        let upstream = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            routes:
              - {name: public, path_prefix: /, upstream: {targets: [\(upstream.address)]}}
            """
        }
        let directory = try TemporaryDirectory.make(prefix: "h2-drain")
        let peer = try ManagedProcess(executable: "/usr/bin/env",
                                      arguments: ["python3", HTTP2GatewayTests.peerScript, "request", String(gateway.port), "/delay/1500"],
                                      logFile: directory + "/peer.log")
        // SIGTERM once the stream is in flight: the upstream has the request and holds its answer
        // 1.5 s (a fixed wait lost the race to a slow Python start on a loaded machine).
        let inFlight = try await Poll.until(timeout: .seconds(10)) { upstream.requestCount >= 1 }
        #expect(inFlight, "\(peer.output)")
        gateway.process.signal(SIGTERM)
        let exit = await peer.waitForExit(timeout: .seconds(15))
        #expect(exit == 0)
        let line = peer.output.split(separator: "\n").last.map(String.init) ?? ""
        let seen = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
        #expect(seen["goaway"] as? Int == 0, "\(peer.output)")
        #expect((seen["status"] as? [String: String])?["1"] == "200", "\(peer.output)")
        #expect((seen["bodies"] as? [String: String])?["1"]?.contains("delay") == true)
        await gateway.stop()
        await upstream.stop()
    }
}
