import Foundation
import PortcullisTestSupport
import Testing

/// A hostile client against a real gateway process with its default request policy: request
/// targets an upstream would resolve differently, duplicate or disagreeing `Host`, identity
/// headers spelled with underscores, bodies trickled in. Behind the gateway, a `/` catch-all
/// route and a public route stand for the backends an escape would reach; `/admin` needs a token.
@Suite("gateway edge: hostile targets, Host, underscores, slow bodies", .serialized)
final class EdgeAttackTests {
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
            \(issuers)
            routes:
              - name: admin
                path_prefix: /admin
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
              - name: public
                path_prefix: /public
                upstream: {targets: [\(upstreamAddress)]}
              - name: orders-delete
                path_prefix: /orders
                methods: [DELETE]
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
              - name: orders
                path_prefix: /orders
                methods: [GET, POST]
                upstream: {targets: [\(upstreamAddress)]}
              - name: tenant-a
                host: a.test
                path_prefix: /
                upstream: {targets: [\(upstreamAddress)]}
                request_headers: {set: {X-Tenant: a}}
              - name: catch-all
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

    private func send(_ raw: String) throws -> HTTPTestResponse {
        let client = try gateway.client()
        defer { client.close() }
        try client.send(raw)
        return try client.readResponse()
    }

    private func get(_ target: String) throws -> HTTPTestResponse {
        try send("GET \(target) HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    }

    // MARK: Request targets

    /// Each target is one that Tomcat, Spring, IIS or a percent-decoding framework resolves to
    /// `/admin/...` (or that smuggles bytes past the matcher). The old code matched them against
    /// `/public` or the catch-all and forwarded them as they were.
    @Test("a target an upstream would resolve into /admin is refused or matched as /admin", arguments: [
        ("/public/..;/admin/users", 400),
        ("/public/.;/x", 400),
        ("/public/%2e%2e;x/admin/users", 400),
        ("/%61dmin/users", 401),
        ("/%41dmin/users", 401),
        ("//admin/users", 401),
        ("/ADMIN/users", 401),
        ("/Admin/users", 401),
        ("/admin;jsessionid=1/users", 400),
        ("/public/x#/../../admin", 400),
        ("/public/x%00.json", 400),
        ("/public/%zz", 400),
        // A format suffix: Rails' `(.:format)` and Spring's suffix patterns serve these as /admin.
        ("/admin.json", 401),
        ("/admin.html/", 401),
        ("/admin.%6Aso%6E", 401),
    ])
    func protectedPrefixEscape(_ target: String, _ status: Int) throws {
        let before = upstream.requestCount
        let response = try get(target)
        #expect(response.status == status, "\(target): \(response.status) \(response.text)")
        #expect(upstream.requestCount == before, "\(target) reached the upstream")
    }

    @Test("the upstream receives exactly the normalised path the router matched; the query is untouched")
    func upstreamSeesNormalisedPath() throws {
        let response = try get("/public/%7Euser//a%2a/%41?q=%61&r=..")
        #expect(response.status == 200)
        #expect(response.json["uri"] as? String == "/public/~user/a%2A/A?q=%61&r=..")
    }

    // MARK: Host

    @Test("two Host headers are refused before routing")
    func duplicateHost() throws {
        let before = upstream.requestCount
        let response = try send("GET /x HTTP/1.1\r\nHost: gw.test\r\nHost: a.test\r\n\r\n")
        #expect(response.status == 400)
        #expect(response.json["error"] as? String == "invalid_request")
        #expect(upstream.requestCount == before)
    }

    /// An HTTP/1.0 request without Host went on as HTTP/1.1 without one on the build before (an
    /// attacker review): h11 refuses that, and a virtual-host upstream serves its default host.
    @Test("a request without Host (HTTP/1.1, or HTTP/1.0, which goes on as HTTP/1.1), or with a malformed one, is refused before the upstream")
    func missingOrMalformedHost() throws {
        let before = upstream.requestCount
        #expect(try send("GET /x HTTP/1.1\r\n\r\n").status == 400)
        let old = try send("GET /public/x HTTP/1.0\r\n\r\n")
        #expect(old.status == 400, "\(old.status) \(old.text)")
        #expect(old.json["error"] as? String == "invalid_request")
        #expect(upstream.requestCount == before)
        #expect(try send("GET /x HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n").status == 400)
        #expect(try send("GET /x HTTP/1.1\r\nHost: a.test/evil\r\n\r\n").status == 400)
    }

    @Test("an absolute-form target is routed by its authority, forwarded in origin form, and must agree with Host")
    func absoluteForm() throws {
        let agreeing = try send("GET http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        #expect(agreeing.status == 200)
        #expect(agreeing.json["uri"] as? String == "/x?y=1")
        #expect(agreeing.echoedHeaders["x-tenant"] == ["a"])

        let before = upstream.requestCount
        let disagreeing = try send("GET http://a.test/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        #expect(disagreeing.status == 400)
        #expect(try send("GET http://user@a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n").status == 400)
        #expect(upstream.requestCount == before)
    }

    @Test("a Host with a trailing dot is the same host: it gets that host's routes")
    func trailingDotHost() throws {
        let response = try send("GET /x HTTP/1.1\r\nHost: A.test.:80\r\n\r\n")
        #expect(response.status == 200)
        #expect(response.echoedHeaders["x-tenant"] == ["a"])
    }

    /// The client pipelines small requests whose answers are larger and never reads: the gateway
    /// must stop reading while its answers are not taken, not buffer them all.
    @Test("a client that pipelines requests and never reads cannot make the gateway buffer without bound")
    func pipelinedNonReader() throws {
        let client = try gateway.client(timeout: 3)
        defer { client.close() }
        let request = Array("GET /nope-\(String(repeating: "x", count: 8)) HTTP/1.1\r\nHost: gw.test\r\n\r\n".utf8)
        let batch = Array((0..<1_000).map { _ in request }.joined())
        var sent = 0
        let target = 64 * 1024 * 1024
        do {
            // Sends block once the gateway stops reading: the send timeout ends the loop.
            while sent < target {
                try client.send(batch)
                sent += batch.count
            }
        } catch {}
        #expect(sent < target, "the gateway read \(sent) bytes of requests whose answers nobody took")
    }

    /// Found by the h11 differential test: llhttp hands over the head of such a request before it
    /// refuses the body, and the gateway forwarded it as a POST with Content-Length: 0.
    @Test("a request whose Transfer-Encoding does not end in chunked is refused before anything reaches the upstream", arguments: [
        "gzip", "chunked, gzip", "identity",
    ])
    func unframeableTransferEncoding(_ coding: String) throws {
        let before = upstream.requestCount
        let client = try gateway.client()
        defer { client.close() }
        try client.send("POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: \(coding)\r\n\r\nabc")
        let response = try client.readResponse()
        #expect(response.status == 400)
        #expect(client.waitForClose())
        #expect(upstream.requestCount == before, "the upstream got a request")
    }

    /// RFC 9112 §6.1: the gateway re-frames a body in chunks; a coding it neither applies nor
    /// removes would reach the upstream undeclared (the build before dropped `gzip` and passed the
    /// gzip bytes on as if plain).
    @Test("a request with a transfer coding other than chunked before its chunked one is refused with 501 before anything reaches the upstream")
    func otherTransferCodingRefused() throws {
        let before = upstream.requestCount
        let response = try send("POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        #expect(response.status == 501)
        #expect(upstream.requestCount == before, "the upstream got a request")
    }

    /// Rack::MethodOverride (in every Rails app), Laravel and Express's method-override run the
    /// method the field names: the build before routed such a POST to the public `orders` route,
    /// whose upstream then ran the DELETE only `orders-delete` (JWT) may (an attacker review).
    @Test("a method override naming a method routed elsewhere — a field alone, after a harmless one, repeated or in a list, or a _method query parameter — is refused 405 before the upstream; one naming a method of the same route passes")
    func methodOverrideRoutedElsewhereRefused() throws {
        let before = upstream.requestCount
        // Each name; a harmless one before the one a framework reads; the same name twice (the
        // last read); a list (its first element read).
        let overrides = ["X-HTTP-Method-Override: delete", "X-HTTP-Method: delete", "x-method-override: delete",
                         "X-HTTP-Method: GET\r\nX-HTTP-Method-Override: DELETE", "X-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE",
                         "X-HTTP-Method-Override: DELETE, GET"]
        for fields in overrides {
            let response = try send("POST /orders/7 HTTP/1.1\r\nHost: gw.test\r\n\(fields)\r\nContent-Length: 0\r\n\r\n")
            #expect(response.status == 405, "\(fields): \(response.status) \(response.text)")
            #expect(response.header("allow") == "GET, POST", "\(response.header("allow") ?? "")")
        }
        // As a query parameter (Symfony and Laravel read `_method` there), plain or percent-encoded.
        // PHP reads `.method`, ` _method`, `_method%00…` and `_method[]` into `$_GET` as `_method`.
        for query in ["_method=DELETE", "a=1&_%6Dethod=delete", "_METHOD=Delete", ".method=DELETE", "%20_method=DELETE", "_method%00=DELETE",
                      "_method%00x=DELETE", "_method%5B%5D=DELETE", "+_method=DELETE"] {
            let response = try send("POST /orders/7?\(query) HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n")
            #expect(response.status == 405, "?\(query): \(response.status) \(response.text)")
        }
        #expect(upstream.requestCount == before, "a refused override reached the upstream")
        #expect(try send("POST /orders/7?_method=get&method=x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n").status == 200)
        #expect(try send("DELETE /orders/7 HTTP/1.1\r\nHost: gw.test\r\n\r\n").status == 401)
        let same = try send("POST /orders/7 HTTP/1.1\r\nHost: gw.test\r\nX-HTTP-Method-Override: GET\r\nContent-Length: 0\r\n\r\n")
        #expect(same.status == 200, "\(same.status) \(same.text)")
    }

    /// The build before answered the refusal and closed the connection, but started the request
    /// pipelined in the same read as the refused request's body: its upstream exchange outlived
    /// the connection's handler, and the process stopped about 1.5 s later ("Attempted to read an
    /// unowned reference but object … was already destroyed"), every connection on it with it
    /// (an attacker review; one write from any client).
    @Test("a request pipelined in the same write as a refused request's body is not started: the refusal closes the connection, nothing reaches the upstream, and the gateway goes on serving")
    func requestAfterRefusedBodyIsNotStarted() async throws {
        // A warm upstream connection, as the attack had.
        #expect(try get("/public/warm").status == 200)
        let before = upstream.requestCount
        let refusals = [
            ("POST /admin/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello", 401),
            ("POST /public/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
        ]
        for (refused, status) in refusals {
            let client = try gateway.client()
            defer { client.close() }
            try client.send(refused + "GET /public/pipelined HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == status, "\(response.status) \(response.text)")
            #expect(client.waitForClose(), "the connection stayed open after \(status)")
        }
        try await Task.sleep(for: .seconds(3))
        #expect(upstream.requestCount == before, "the pipelined request reached the upstream")
        #expect(try get("/public/after").status == 200)
    }

    /// NIO's HTTP/1.1 decoder (llhttp) reads what follows a CONNECT as tunnel bytes, never as a
    /// body. The build before forwarded the CONNECT with its `Content-Length` and no body, and
    /// pooled the upstream connection: an upstream that answers before reading a body then read
    /// the next client's request on that connection (its token included) as this one's body.
    @Test("an HTTP/1.1 CONNECT is answered 405 and its connection closed; nothing reaches the upstream, a Content-Length on it neither")
    func connectRefused() throws {
        let before = upstream.requestCount
        for target in ["/public/x", "gw.test:443"] {
            let client = try gateway.client()
            defer { client.close() }
            try client.send("CONNECT \(target) HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 600\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 405, "\(target): \(response.status)")
            #expect(client.waitForClose(), "\(target): the connection stayed open")
        }
        #expect(upstream.requestCount == before, "the upstream got a request")
    }

    /// The decoder reads nothing after an upgrade request either: the build before answered one
    /// for another protocol and then left the connection open, never reading the client's next
    /// request.
    @Test("a request upgrading to a protocol other than WebSocket is forwarded without Upgrade, answered, and its connection closed")
    func otherUpgradeClosesAfterAnswer() throws {
        let client = try gateway.client()
        defer { client.close() }
        try client.send("GET /public/up HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.echoedHeaders["upgrade"] == nil)
        #expect(response.header("connection")?.lowercased() == "close")
        #expect(client.waitForClose(), "the connection stayed open")
    }

    @Test("a Content-Length with leading zeros reaches the upstream as the number it is")
    func contentLengthCanonical() throws {
        let response = try send("POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 005\r\n\r\nhello")
        #expect(response.status == 200)
        #expect(response.echoedHeaders["content-length"] == ["5"])
        #expect(response.json["body_bytes"] as? Int == 5)
    }

    // MARK: Underscores

    @Test("header names with underscores, or with other characters than letters, digits and '-', are dropped, so neither X_Auth_Subject nor X-Auth.Subject can reach a CGI-style upstream")
    func underscoreHeadersDropped() throws {
        let response = try send("GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX_Auth_Subject: admin\r\nx-auth_scopes: all\r\nX_Custom: 1\r\nX-Kept: 2\r\n"
                                + "X-Auth.Subject: admin\r\nX~Auth~Scopes: all\r\nX+Tenant: other\r\n\r\n")
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        #expect(headers["x_auth_subject"] == nil)
        #expect(headers["x-auth_scopes"] == nil)
        #expect(headers["x-auth.subject"] == nil && headers["x~auth~scopes"] == nil && headers["x+tenant"] == nil)
        #expect(headers["x_custom"] == nil)
        #expect(headers["x-kept"] == ["2"])
    }

    // MARK: Slow bodies

    /// The default minimum data rate (256 bytes/s after a 10 s grace) cuts a client that sends one
    /// byte and then nothing; the old code waited as long as the client liked, holding an
    /// upstream connection.
    @Test("a body trickled below the minimum data rate is answered 408 and its upstream connection closed")
    func slowBody() async throws {
        let client = try gateway.client(timeout: 30)
        defer { client.close() }
        let started = ContinuousClock.now
        try client.send("POST /public/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n\r\nx")
        let response = try client.readResponse()
        let waited = ContinuousClock.now - started
        #expect(response.status == 408)
        #expect(response.json["error"] as? String == "request_timeout")
        #expect(response.header("connection") == "close")
        #expect(client.waitForClose())
        #expect(waited >= .seconds(9) && waited < .seconds(25), "cut after \(waited)")
        let upstream = self.upstream
        #expect(try await Poll.until { upstream.openConnections == 0 }, "the upstream connection stayed open")
    }
}

/// A client that asks for a large response and never reads it, against a gateway with a short
/// `response_write_timeout`: the gateway must let go of the client and of the upstream connection.
@Suite("gateway edge: clients that stop reading", .serialized)
final class StalledReaderTests {
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
            limits: {response_write_timeout: 1s}
            routes:
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

    @Test("a client that stops taking a response is disconnected after the write timeout, and the upstream connection with it")
    func stalledReader() async throws {
        let size = 512 * 1024 * 1024
        let client = try gateway.client(timeout: 20)
        defer { client.close() }
        try client.send("GET /bytes/\(size) HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        let upstream = self.upstream
        #expect(try await Poll.until { upstream.connectionCount == 1 }, "the gateway never connected upstream")
        // Buffers on both sides fill within a moment; then the timeout runs.
        #expect(try await Poll.until(timeout: .seconds(15)) { upstream.openConnections == 0 }, "the upstream connection stayed open")
        let metrics = try gateway.metrics()
        #expect(metrics.contains(#"portcullis_slow_clients_total{direction="response"} 1"#))
        // What the client can still read is what was buffered before the cut: far from all of it.
        let received = client.drain()
        #expect(received.closed)
        #expect(received.bytes < size / 4, "received \(received.bytes) bytes")
    }
}
