import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// A real gateway process in front of a real upstream, over real sockets.
@Suite("gateway: routing, auth errors, forwarding", .serialized)
final class GatewayProxyTests {
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
            event_loops: 2
            realm: tests
            identity_headers:
              sub: X-Auth-Subject
              scope: X-Auth-Scopes
              iss: X-Auth-Issuer
              client_id: X-Auth-Client-Id
              tenant: X-Tenant
              roles: X-Auth-Roles
            \(issuers)
            rate_limits:
              - name: tiny
                key: subject
                limit: 3
                window: 60s
            routes:
              - name: public
                path_prefix: /public
                upstream: {targets: [\(upstreamAddress)]}
              - name: orders
                path_prefix: /orders
                methods: [GET, POST]
                strip_prefix: true
                upstream: {targets: [\(upstreamAddress)]}
                auth:
                  type: jwt
                  scopes: {any_of: [orders:read, orders:admin]}
                request_headers: {set: {X-Route: orders}}
                response_headers: {remove: [X-Upstream]}
              - name: orders-admin
                path_prefix: /orders/admin
                upstream: {targets: [\(upstreamAddress)]}
                auth:
                  type: jwt
                  scopes: {all_of: [orders:admin, orders:write]}
              - name: limited
                path_prefix: /limited
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
                rate_limit: tiny
              - name: vhost
                host: special.test
                path_prefix: /
                upstream: {targets: [\(upstreamAddress)]}
                strip_authorization: true
                auth: {type: jwt}
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

    @Test("an unauthenticated route proxies and the upstream sees forwarding headers")
    func publicRoute() throws {
        let response = try gateway.request("GET", "/public/hello?x=1", headers: [("X-Request-Id", "req-123")])
        #expect(response.status == 200)
        #expect(response.json["uri"] as? String == "/public/hello?x=1")
        let headers = response.echoedHeaders
        #expect(headers["x-forwarded-for"] == ["127.0.0.1"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-forwarded-host"] == ["test.local"])
        #expect(headers["forwarded"]?.first?.contains("for=127.0.0.1") == true)
        #expect(headers["x-request-id"] == ["req-123"])
        #expect(response.header("x-request-id") == "req-123")
        #expect(headers["x-auth-subject"] == nil)
    }

    @Test("a malformed X-Request-Id is replaced by a generated one")
    func requestIDReplaced() throws {
        let response = try gateway.request("GET", "/public/x", headers: [("X-Request-Id", "bad id with spaces")])
        let forwarded = response.echoedHeaders["x-request-id"]?.first ?? ""
        #expect(forwarded.count == 32)
        #expect(response.header("x-request-id") == forwarded)
    }

    @Test("no route is 404, wrong method is 405 with Allow, both JSON")
    func notFoundAndMethod() throws {
        let missing = try gateway.request("GET", "/nothing-here")
        #expect(missing.status == 404)
        #expect(missing.json["error"] as? String == "not_found")
        #expect((missing.json["request_id"] as? String)?.isEmpty == false)
        let wrongMethod = try gateway.request("DELETE", "/orders/1")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("allow") == "GET, POST")
    }

    @Test("dot segments and encoded slashes cannot escape a prefix")
    func pathTraversal() throws {
        #expect(try gateway.request("GET", "/public/../orders/1").status == 400)
        #expect(try gateway.request("GET", "/public/%2e%2e/orders").status == 400)
        #expect(try gateway.request("GET", "/public%2forders").status == 400)
    }

    @Test("no token: 401 with a realm-only challenge")
    func missingToken() throws {
        let response = try gateway.request("GET", "/orders/1")
        #expect(response.status == 401)
        #expect(response.header("www-authenticate") == "Bearer realm=\"tests\"")
        #expect(response.json["error"] as? String == "unauthorized")
    }

    @Test("malformed, tampered and expired tokens: 401 invalid_token with a reason, never 500",
          arguments: ["garbage", "a.b.c", "Zm9v.YmFy.YmF6", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
    func invalidTokens(_ token: String) throws {
        let response = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
        #expect(response.status == 401)
        let challenge = response.header("www-authenticate") ?? ""
        #expect(challenge.hasPrefix("Bearer realm=\"tests\", error=\"invalid_token\", error_description=\""))
        #expect(response.json["error"] as? String == "invalid_token")
        #expect(!(response.json["error_description"] as? String ?? "").contains(token) || token.count < 8)
    }

    @Test("a credential outside RFC 6750's b64token syntax is named as such", arguments: ["a b", "x.y,z", "ab=c"])
    func notB64Token(_ token: String) throws {
        let response = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
        #expect(response.status == 401)
        #expect(response.json["error"] as? String == "invalid_token")
        #expect(response.json["error_description"] as? String == "the bearer token is not a valid b64token")
    }

    @Test("an expired token and a tampered signature are rejected")
    func expiredAndTampered() throws {
        let expired = try issuer.token(expiresIn: -3600)
        let expiredResponse = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(expired)")])
        #expect(expiredResponse.status == 401)
        #expect((expiredResponse.header("www-authenticate") ?? "").contains("invalid_token"))

        // One character in the middle of the signature changed: it carries six bits of the
        // signature itself (the last character's low bits are padding, and changing only those
        // could leave the signature as it was).
        var parts = try issuer.token().split(separator: ".").map { Array($0) }
        parts[2][10] = parts[2][10] == "A" ? "B" : "A"
        let good = parts.map { String($0) }.joined(separator: ".")
        let tampered = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(good)")])
        #expect(tampered.status == 401)
    }

    @Test("a valid token passes; identity headers come only from the token")
    func identityForwarding() throws {
        let token = try issuer.token(sub: "alice", scope: "orders:read extra", clientID: "web-app")
        let response = try gateway.request("GET", "/orders/42", headers: [
            ("Authorization", "Bearer \(token)"),
            ("X-Auth-Subject", "mallory"),
            ("x-auth-scopes", "orders:admin"),
            ("X-Auth-Client-Id", "evil"),
            ("X-Auth-Issuer", "https://evil"),
        ])
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        #expect(headers["x-auth-subject"] == ["alice"])
        #expect(headers["x-auth-scopes"] == ["orders:read extra"])
        #expect(headers["x-auth-client-id"] == ["web-app"])
        #expect(headers["x-auth-issuer"] == [TestIssuer.issuer])
        #expect(headers["authorization"]?.first?.hasPrefix("Bearer ") == true)
        #expect(headers["x-route"] == ["orders"])
        // strip_prefix: /orders/42 → /42
        #expect(response.json["uri"] as? String == "/42")
        // response_headers.remove
        #expect(response.header("x-upstream") == nil)
    }

    /// The client fills in the identity headers for claims its token does not carry, hoping the
    /// gateway only overwrites the ones it sets.
    @Test("on an authenticated route, an identity header whose claim the token lacks is removed, not passed on from the client")
    func spoofedHeaderForMissingClaim() throws {
        let token = try issuer.token(sub: "alice", clientID: nil)
        let response = try gateway.request("GET", "/orders/1", headers: [
            ("Authorization", "Bearer \(token)"), ("X-Tenant", "other-tenant"), ("X-Auth-Roles", "admin"), ("X-Auth-Client-Id", "evil"),
        ])
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        #expect(headers["x-auth-subject"] == ["alice"])
        for name in ["x-tenant", "x-auth-roles", "x-auth-client-id"] {
            #expect(headers[name] == nil, "\(name) reached the upstream: \(headers[name] ?? [])")
        }
    }

    /// A token's issuer (or anyone who can get a claim value into one, such as a user's display
    /// name) tries to split an identity header and inject a field of its own.
    @Test("control characters in claims (CR, LF, NUL, TAB, DEL) reach the upstream as spaces, in the subject and in configured claim headers; no field is injected")
    func claimControlCharacters() throws {
        let token = try issuer.token(sub: "alice\r\nX-Evil: 1", extra: [
            "tenant": .string("t\u{0}1\tx\u{7F}\r\nX-Evil-Tenant: 2"),
            "roles": .array([.string("admin\r\nX-Evil-Role: 3"), .string("reader")]),
        ])
        let response = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")])
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        for name in ["x-evil", "x-evil-tenant", "x-evil-role"] {
            #expect(headers[name] == nil, "\(name) was injected: \(headers[name] ?? [])")
        }
        #expect(headers["x-auth-subject"] == ["alice  X-Evil: 1"])
        #expect(headers["x-tenant"] == ["t 1 x   X-Evil-Tenant: 2"])
        // An array element holding control characters is quoted (`SpaceSeparatedList`), then
        // they become spaces inside the quotes.
        #expect(headers["x-auth-roles"] == [#""admin  X-Evil-Role: 3" reader"#])
    }

    @Test("an RS256 token from the same issuer passes too")
    func rs256() throws {
        let token = try issuer.token(signer: issuer.rs256)
        #expect(try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)")]).status == 200)
    }

    /// `X-Real-IP` (nginx's convention, which many applications read for the client's address)
    /// passed through as the client wrote it on the build before.
    @Test("spoofed identity headers, default and configured, and a client's own X-Real-IP are removed even on unauthenticated routes")
    func spoofingOnPublicRoute() throws {
        let spoofed = [("X-Auth-Subject", "root"), ("x-auth-scopes", "orders:admin"), ("X-AUTH-ISSUER", "https://evil"),
                       ("X-Auth-Client-Id", "evil"), ("X-Tenant", "other-tenant"), ("x-auth-roles", "admin"), ("X-Forwarded-Proto", "https"),
                       ("X-Real-IP", "6.6.6.6")]
        let response = try gateway.request("GET", "/public/x", headers: spoofed)
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        for name in ["x-auth-subject", "x-auth-scopes", "x-auth-issuer", "x-auth-client-id", "x-tenant", "x-auth-roles", "x-real-ip"] {
            #expect(headers[name] == nil, "\(name) reached the upstream: \(headers[name] ?? [])")
        }
        #expect(headers["x-forwarded-proto"] == ["http"])
    }

    /// The build before forwarded each as the client wrote it (an attacker review): go-chi's
    /// RealIP reads `True-Client-IP` first, Spring's ForwardedHeaderFilter and Werkzeug's ProxyFix
    /// the port and prefix, and IIS and Symfony route by `X-Original-URL` — past the route the
    /// gateway matched and authenticated.
    /// The second group passed on the build before (an attacker review): Rails' RemoteIp reads
    /// `Client-IP`, common Java and PHP snippets `Proxy-Client-IP` and `HTTP_CLIENT_IP`, RFC 9440
    /// upstreams `Client-Cert`, and CGI-style ones turn `Proxy` into `HTTP_PROXY` (httpoxy).
    @Test("a client's own client-address, forwarding, original-URL and client-certificate fields the gateway does not state (True-Client-IP, Client-IP, X-Forwarded-Port, X-Original-URL, Client-Cert, httpoxy's Proxy …) are removed before the upstream")
    func clientStatedForwardingRemoved() throws {
        let names = ["x-real-ip", "true-client-ip", "x-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip",
                     "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-forwarded-ssl", "x-forwarded-scheme",
                     "x-forwarded-uri", "x-forwarded-path", "x-forwarded-method", "front-end-https", "x-url-scheme",
                     "x-original-url", "x-rewrite-url", "x-original-uri", "x-original-method", "x-original-host", "x-host",
                     "x-originating-ip", "x-remote-ip", "x-remote-addr", "x-envoy-external-address", "x-envoy-original-path",
                     "client-ip", "x-forwarded", "forwarded-for", "proxy-client-ip", "wl-proxy-client-ip", "x-original-forwarded-for",
                     "x-real-forwarded-for", "x-proxyuser-ip", "fly-client-ip", "x-azure-clientip", "x-azure-socketip",
                     "x-appengine-user-ip", "cf-connecting-ipv6", "remote-addr", "x-http-host-override", "x-envoy-internal",
                     "client-cert", "client-cert-chain", "x-forwarded-client-cert", "x-ssl-client-cert", "x-ssl-client-verify",
                     "x-ssl-client-s-dn", "proxy",
                     // The third group passed after the second fix (a second review): scheme, certificate and
                     // identity fields of other proxies, and the prefixed families.
                     "x-scheme", "x-arr-clientcert", "remote-user", "x-forwarded-user", "x-middleware-subrequest",
                     "x-envoy-retry-on", "x-amzn-mtls-clientcert", "x-client-cert-present", "x-forwarded-tls-client-cert",
                     "x-auth-request-user", "x-ms-client-principal-name", "x-ssl-client-cn"]
        let spoofed = names.map { ($0, $0.contains("url") || $0.contains("uri") || $0.contains("path") ? "/orders/admin" : "6.6.6.6") }
        let response = try gateway.request("GET", "/public/x", headers: spoofed.map { ($0.0.uppercased(), $0.1) })
        #expect(response.status == 200)
        let headers = response.echoedHeaders
        for (name, _) in spoofed { #expect(headers[name] == nil, "\(name) reached the upstream: \(headers[name] ?? [])") }
        #expect(headers["x-forwarded-for"] == ["127.0.0.1"])
    }

    @Test("missing scope: 403 insufficient_scope naming the scope; the longest prefix wins")
    func insufficientScope() throws {
        let token = try issuer.token(scope: "orders:read")
        let response = try gateway.request("GET", "/orders/admin/x", headers: [("Authorization", "Bearer \(token)")])
        #expect(response.status == 403)
        let challenge = response.header("www-authenticate") ?? ""
        #expect(challenge.contains("error=\"insufficient_scope\""))
        #expect(challenge.contains("scope=\"orders:admin orders:write\""))
        #expect(response.json["error"] as? String == "insufficient_scope")

        let noScope = try issuer.token(scope: nil)
        #expect(try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(noScope)")]).status == 403)
    }

    @Test("host routing and strip_authorization")
    func hostRouting() throws {
        let token = try issuer.token()
        let response = try gateway.request("GET", "/anything", headers: [("Host", "special.test:8080"), ("Authorization", "Bearer \(token)")])
        #expect(response.status == 200)
        #expect(response.echoedHeaders["authorization"] == nil)
        #expect(response.echoedHeaders["x-auth-subject"] == ["alice"])
        // Without the host, /anything matches nothing.
        #expect(try gateway.request("GET", "/anything", headers: [("Authorization", "Bearer \(token)")]).status == 404)
    }

    @Test("two Authorization headers are ambiguous: 400 invalid_request")
    func ambiguousAuthorization() throws {
        let token = try issuer.token()
        let response = try gateway.request("GET", "/orders/1", headers: [("Authorization", "Bearer \(token)"), ("Authorization", "Bearer \(token)")])
        #expect(response.status == 400)
        #expect(response.json["error"] as? String == "invalid_request")
    }

    @Test("rate limit: 429 with Retry-After and RateLimit headers; other subjects unaffected")
    func rateLimit() throws {
        let token = try issuer.token(sub: "limited-user")
        var statuses: [Int] = []
        var last: HTTPTestResponse?
        for _ in 0..<5 {
            let response = try gateway.request("GET", "/limited/x", headers: [("Authorization", "Bearer \(token)")])
            statuses.append(response.status)
            last = response
        }
        #expect(statuses == [200, 200, 200, 429, 429])
        #expect(last?.header("retry-after").flatMap(Int.init).map { $0 >= 1 } == true)
        // The IETF draft's structured fields (http.rate_limit_headers: draft, the default).
        #expect(last?.header("ratelimit-policy") == #""tiny";q=3;w=60"#)
        #expect(last?.header("ratelimit")?.hasPrefix(#""tiny";r=0;t="#) == true)
        #expect(last?.header("ratelimit-remaining") == nil)
        #expect(last?.json["error"] as? String == "rate_limited")
        let other = try issuer.token(sub: "someone-else")
        #expect(try gateway.request("GET", "/limited/x", headers: [("Authorization", "Bearer \(other)")]).status == 200)
    }

    @Test("keep-alive: many requests on one client connection reuse few upstream connections")
    func keepAlive() throws {
        let before = upstream.connectionCount
        let client = try gateway.client()
        for index in 0..<50 {
            let response = try client.request("GET", "/public/\(index)")
            #expect(response.status == 200)
        }
        client.close()
        #expect(upstream.connectionCount - before <= 2)
    }

    @Test("pipelined requests are answered in order, though the upstream answers earlier ones later")
    func pipelining() throws {
        let client = try gateway.client()
        var bytes: [UInt8] = []
        // Earlier requests wait longer at the upstream: answered as they complete, they would come back reversed.
        let delays = [300, 0, 200, 0, 100, 0, 50, 0, 0, 0]
        for (index, delay) in delays.enumerated() {
            bytes += HTTPTestClient.format("GET", delay > 0 ? "/public/delay/\(delay)/\(index)" : "/public/\(index)")
        }
        let start = ContinuousClock.now
        try client.send(bytes)
        for index in delays.indices {
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect((response.json["uri"] as? String)?.hasSuffix("/\(index)") == true, "response \(index): \(response.json["uri"] ?? "-")")
        }
        // The delays were real (the upstream held those requests).
        #expect(ContinuousClock.now - start >= .milliseconds(300))
    }

    @Test("pipelined requests ahead of bytes the decoder refuses, or ahead of one with Connection: close, are each answered before the connection closes, also when what follows takes more reads; what follows is not forwarded")
    func pipelinedAheadOfTheEnd() throws {
        // 8 KB more: the gateway's reads go on past the refused bytes (NIO reads while its reads
        // fill the buffer), and the decoder reports each as data received after its error.
        let more = String(repeating: "x", count: 8192)
        let cases: [(name: String, ending: [UInt8], expected: [Int])] = [
            ("garbage", Array("BAD\u{1}REQUEST\r\n\r\n".utf8), [200, 200, 400]),
            ("garbage and more", Array(("BAD\u{1}REQUEST\r\n\r\n" + more).utf8), [200, 200, 400]),
            ("close", HTTPTestClient.format("GET", "/public/2", headers: [("Connection", "close")]) + HTTPTestClient.format("GET", "/public/3"),
             [200, 200, 200]),
            ("close and more", HTTPTestClient.format("GET", "/public/2", headers: [("Connection", "close")])
                + HTTPTestClient.format("GET", "/public/3", headers: [("X-More", more)]), [200, 200, 200]),
        ]
        for (name, ending, expected) in cases {
            let before = upstream.requestCount
            let client = try gateway.client()
            // The first request waits at the upstream, so the rest queue behind it at the gateway.
            try client.send(HTTPTestClient.format("GET", "/public/delay/200/0") + HTTPTestClient.format("GET", "/public/1") + ending)
            var statuses: [Int] = []
            for index in expected.indices {
                let response = try client.readResponse()
                statuses.append(response.status)
                if response.status == 200 {
                    #expect((response.json["uri"] as? String)?.hasSuffix("/\(index)") == true, "\(name): response \(index)")
                }
                if index == expected.count - 1 { #expect(response.header("Connection") == "close", "\(name)") }
            }
            #expect(statuses == expected, "\(name)")
            #expect(client.waitForClose(), "\(name): the connection closes after the last answer")
            // Only the requests answered 200 reached the upstream (not /public/3 behind the close).
            #expect(upstream.requestCount - before == expected.filter { $0 == 200 }.count, "\(name)")
        }
    }

    @Test("a POST body arrives intact, and chunked bodies are re-framed")
    func bodies() throws {
        let token = try issuer.token()
        let body = Array(repeating: UInt8(ascii: "z"), count: 100_000)
        let response = try gateway.request("POST", "/orders/new", headers: [("Authorization", "Bearer \(token)")], body: body)
        #expect(response.status == 200)
        #expect(response.json["body_bytes"] as? Int == 100_000)

        let client = try gateway.client()
        try client.send("POST /public/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        let chunked = try client.readResponse()
        #expect(chunked.json["body_bytes"] as? Int == 11)
        #expect(chunked.json["body_preview"] as? String == "hello world")
    }

    @Test("on a strip_prefix route, a format suffix of dots (/orders.., /orders%2e%2e/, /ORDERS.%2E) is refused 400 and reaches no upstream as /..")
    func strippedPrefixLeavesNoDotSegment() throws {
        let token = try issuer.token(sub: "alice", scope: "orders:read")
        let before = upstream.requestCount
        for path in ["/orders..", "/orders%2e%2e/", "/ORDERS.%2E", "/orders.", "/orders..?q=1"] {
            let response = try gateway.request("GET", path, headers: [("Authorization", "Bearer \(token)")])
            #expect(response.status == 400, "\(path): \(response.status)")
            #expect(response.json["error"] as? String == "invalid_request", "\(path)")
        }
        // Not a format suffix (more follows it): no route takes it.
        #expect(try gateway.request("GET", "/orders../x", headers: [("Authorization", "Bearer \(token)")]).status == 404)
        #expect(upstream.requestCount == before, "a dot segment reached the upstream")
        let served = try gateway.request("GET", "/orders/42", headers: [("Authorization", "Bearer \(token)")])
        #expect(served.status == 200 && served.json["uri"] as? String == "/42")
    }

    @Test("on a JWT route, a request with a second token in an access_token query parameter is refused 400 invalid_request (RFC 6750 §3.1) and reaches no upstream, which might act for that token's holder")
    func secondTokenInQueryIsRefused() throws {
        let token = try issuer.token(sub: "alice", scope: "orders:read")
        let other = try issuer.token(sub: "mallory", scope: "orders:admin orders:write")
        let before = upstream.requestCount
        for path in ["/orders/1?access_token=\(other)", "/orders/1?page=2&Access.Token=\(other)", "/orders/1?access%5Ftoken[]=\(other)"] {
            let response = try gateway.request("GET", path, headers: [("Authorization", "Bearer \(token)")])
            #expect(response.status == 400, "\(path): \(response.status)")
            #expect(response.header("www-authenticate")?.contains("error=\"invalid_request\"") == true, "\(path)")
        }
        #expect(upstream.requestCount == before, "a request with a second token reached the upstream")
        #expect(try gateway.request("GET", "/orders/1?page=2", headers: [("Authorization", "Bearer \(token)")]).status == 200)
        #expect(try gateway.request("GET", "/public/x?access_token=anything").status == 200)
    }

    @Test("Connection: content-length cannot make the upstream read a body as a second request")
    func connectionListedFraming() throws {
        let smuggled = "GET /public/admin HTTP/1.1\r\nHost: t\r\nX-Auth-Subject: admin\r\n\r\n"
        let before = upstream.requestCount
        let client = try gateway.client()
        try client.send("POST /public/form HTTP/1.1\r\nHost: t\r\nConnection: content-length\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["uri"] as? String == "/public/form")
        #expect(response.json["body_bytes"] as? Int == smuggled.utf8.count)
        #expect(try client.request("GET", "/public/after").status == 200)
        // Exactly the two requests the client made reached the upstream.
        #expect(upstream.requestCount - before == 2)
    }

    @Test("Expect: 100-continue is answered only once the request passed auth, never for a refused one")
    func expectContinue() throws {
        let token = try issuer.token()
        let head = { (path: String, auth: Bool) in
            "POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n" + (auth ? "Authorization: Bearer \(token)\r\n" : "") + "\r\n"
        }
        // A client that waits for the 100 before it sends the body (a short timeout: no 100, no body).
        for (path, auth) in [("/orders/up", true), ("/public/up", false)] {
            let client = try gateway.client(timeout: 3)
            try client.send(head(path, auth))
            let interim = try client.readResponse(informational: true)
            #expect(interim.status == 100, "\(path)")
            try client.send("data")
            let response = try client.readResponse(informational: true)
            #expect(response.status == 200, "\(path)")
            #expect(response.json["body_bytes"] as? Int == 4)
            #expect(response.echoedHeaders["expect"] == nil)
        }

        // Refused (no token, a bad token): the first thing the client gets is the 401, no 100.
        for authorization in [nil, "Bearer not-a-token"] {
            let before = upstream.requestCount
            let refused = try gateway.client(timeout: 3)
            var text = "POST /orders/up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
            if let authorization { text += "Authorization: \(authorization)\r\n" }
            try refused.send(text + "\r\n")
            let response = try refused.readResponse(informational: true)
            #expect(response.status == 401)
            // The unread body would be taken for the next request: the connection closes, and no
            // 100 turns up late.
            #expect(response.header("connection") == "close")
            let rest = refused.drain()
            #expect(rest.bytes == 0 && rest.closed, "\(rest)")
            #expect(upstream.requestCount == before)
        }
    }

    @Test("request smuggling shapes are refused with 400 and the connection closed")
    func smuggling() throws {
        let both = try gateway.client()
        try both.send("POST /public/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        let bothResponse = try both.readResponse()
        #expect(bothResponse.status == 400)
        #expect(bothResponse.header("connection") == "close")
        #expect(both.waitForClose())

        let twoLengths = try gateway.client()
        try twoLengths.send("POST /public/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde")
        let twoLengthsResponse = try twoLengths.readResponse()
        #expect(twoLengthsResponse.status == 400)
        #expect(twoLengthsResponse.header("connection") == "close")
        #expect(twoLengths.waitForClose())
        // Neither reached the upstream.
        #expect(upstream.requestCount == 0)

        let badChunk = try gateway.client()
        try badChunk.send("POST /public/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        let badChunkResponse = try badChunk.readResponse()
        #expect(badChunkResponse.status == 400)
        #expect(badChunkResponse.json["error"] as? String == "invalid_request")
        #expect(badChunk.waitForClose())

        // Garbage after a complete request: that request is answered (by the upstream, not with
        // the 400 meant for the garbage), then the garbage gets its 400 and the connection closes.
        let trailing = try gateway.client()
        try trailing.send("POST /public/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nokBAD\r\n\r\n")
        let answered = try trailing.readResponse()
        #expect(answered.status == 200)
        #expect(answered.json["body_bytes"] as? Int == 2)
        let garbageAnswer = try trailing.readResponse()
        #expect(garbageAnswer.status == 400)
        #expect(garbageAnswer.header("connection") == "close")
        #expect(trailing.waitForClose())

        // What the decoder refuses gets the gateway's JSON error, and nothing more is read.
        let garbage = try gateway.client()
        try garbage.send("GET /public/x HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
        let refused = try garbage.readResponse()
        #expect(refused.status == 400)
        #expect(refused.json["error"] as? String == "invalid_request")
        #expect(refused.header("connection") == "close")
        #expect(garbage.waitForClose())
    }

    @Test("oversized headers are refused")
    func headerLimit() throws {
        let response = try gateway.request("GET", "/public/x", headers: [("X-Big", String(repeating: "a", count: 40_000))])
        #expect(response.status == 400 || response.status == 431)
    }

    @Test("metrics count requests by route, method and exact status, and auth decisions by route and reason")
    func metrics() throws {
        _ = try gateway.request("GET", "/public/m")
        _ = try gateway.request("GET", "/orders/1")
        let text = try gateway.metrics()
        #expect(text.contains("portcullis_http_requests_total{route=\"public\",method=\"GET\",code=\"200\"}"))
        #expect(text.contains("portcullis_http_requests_total{route=\"orders\",method=\"GET\",code=\"401\"}"))
        #expect(text.contains("portcullis_auth_decisions_total{route=\"orders\",reason=\"missing_token\"}"))
        #expect(text.contains("# HELP portcullis_gateway_added_latency_seconds"))
        #expect(text.contains("portcullis_open_connections"))

        // The latency histograms saw the proxied request: counted, cumulative buckets, a sum in
        // seconds that is positive and below the test's own run time.
        func sample(_ series: String) -> Double? { PrometheusText.sample(text, series) }
        for name in ["portcullis_http_request_duration_seconds", "portcullis_upstream_duration_seconds"] {
            let count = try #require(sample(name + "_count{route=\"public\"}"))
            #expect(count >= 1)
            #expect(sample(name + "_bucket{route=\"public\",le=\"+Inf\"}") == count)
            // Bounds are spelled as Prometheus' Go client spells them (`10`, not `10.0`): 2.x matches `le` as text.
            #expect(sample(name + "_bucket{route=\"public\",le=\"10\"}") == count)
            #expect(sample(name + "_bucket{route=\"public\",le=\"1\"}") == count)
            let fastest = try #require(sample(name + "_bucket{route=\"public\",le=\"5e-05\"}"))
            #expect(fastest <= count)
            let sum = try #require(sample(name + "_sum{route=\"public\"}"))
            #expect(sum > 0 && sum < 60 * count)
        }
        let added = try #require(sample("portcullis_gateway_added_latency_seconds_count"))
        #expect(added >= 1)
    }

    @Test("the access log has one line per request, with the path but never the query string or the token")
    func accessLog() async throws {
        let token = try issuer.token(sub: "log-user")
        let response = try gateway.request("GET", "/orders/logged?api_key=query-secret-5f2e&page=2", headers: [("Authorization", "Bearer \(token)")])
        // The upstream got the query; only the log leaves it out.
        #expect(response.json["uri"] as? String == "/logged?api_key=query-secret-5f2e&page=2")
        // Lines are written by the log's own thread, a moment after the response.
        _ = try await Poll.until(timeout: .seconds(5)) { gateway.process.output.contains("/orders/logged") }
        let output = gateway.process.output
        let lines = output.split(separator: "\n").filter { $0.contains("/orders/logged") }
        #expect(lines.count == 1, "\(output.suffix(2000))")
        #expect(lines.first.map { $0.contains("subject=log-user") || $0.contains("\"subject\":\"log-user\"") } == true)
        #expect(!output.contains("query-secret-5f2e"))
        #expect(!output.contains("api_key"))
        #expect(!output.contains(token))
        #expect(!output.contains(String(token.split(separator: ".")[2])))
    }
}
