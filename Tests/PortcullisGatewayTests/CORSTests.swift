import Foundation
import PortcullisTestSupport
import Testing

/// Browsers' cross-origin requests against a real gateway process and upstream: the gateway
/// answers preflights itself before authentication, refuses origins, methods and headers the
/// route does not allow, and states the CORS fields on every response of a CORS route — the
/// gateway's own errors included — reflecting only configured origins.
@Suite("gateway: CORS per route", .serialized)
final class CORSTests {
    static let app = "https://app.example"
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
            let cors = """
                cors:
                  allowed_origins: [\(Self.app)]
                  allowed_methods: [GET, POST, DELETE]
                  allowed_headers: [Authorization, Content-Type]
                  exposed_headers: [X-Request-Id]
                  allow_credentials: true
                  max_age: 10m
            """
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            \(issuers)
            rate_limits:
              - {name: one, key: ip, limit: 1, window: 60s}
            routes:
              - name: api
                path_prefix: /api
                methods: [GET, POST, DELETE]
                upstream: {targets: [\(upstreamAddress)]}
                auth: {type: jwt}
            \(cors)
              - name: limited
                path_prefix: /limited
                upstream: {targets: [\(upstreamAddress)]}
                rate_limit: one
            \(cors)
              - name: down
                path_prefix: /down
                upstream: {targets: ['127.0.0.1:1'], connect_timeout: 1s}
            \(cors)
              - name: raw
                path_prefix: /raw
                upstream: {targets: [\(upstreamAddress)]}
                websocket: true
            \(cors)
              - name: anyone
                path_prefix: /anyone
                upstream: {targets: [\(upstreamAddress)]}
                cors: {allowed_origins: '*', allowed_headers: ['*']}
              - name: plain
                path_prefix: /plain
                upstream: {targets: [\(upstreamAddress)]}
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

    func preflight(_ path: String, origin: String = app, method: String = "POST", headers: String? = "authorization, content-type") throws -> HTTPTestResponse {
        var fields = [("Origin", origin), ("Access-Control-Request-Method", method)]
        if let headers { fields.append(("Access-Control-Request-Headers", headers)) }
        return try gateway.request("OPTIONS", path, headers: fields)
    }

    /// Every `Access-Control-*` field of `response`.
    func corsFields(_ response: HTTPTestResponse) -> [String] {
        response.headers.filter { $0.name.hasPrefix("access-control-") }.map { "\($0.name): \($0.value)" }
    }

    @Test("a preflight to a JWT route gets a 204 with the route's CORS fields without any token, and never reaches the upstream")
    func preflightBeforeAuthentication() throws {
        let before = upstream.requestCount
        let response = try preflight("/api/orders")
        #expect(response.status == 204)
        #expect(response.header("access-control-allow-origin") == Self.app)
        #expect(response.header("access-control-allow-credentials") == "true")
        #expect(response.header("access-control-allow-methods") == "GET, POST, DELETE")
        #expect(response.header("access-control-allow-headers") == "authorization, content-type")
        #expect(response.header("access-control-max-age") == "600")
        #expect(response.header("vary")?.contains("Origin") == true)
        #expect(response.header("content-length") == nil && response.header("www-authenticate") == nil)
        #expect(upstream.requestCount == before)
        // Preflights are not rate limited either: the one request /limited allows is still there.
        #expect(try preflight("/limited/x").status == 204)
        #expect(try preflight("/limited/x").status == 204)
        #expect(try gateway.request("GET", "/limited/x", headers: [("Origin", Self.app)]).status == 200)
    }

    @Test("a preflight from an origin, for a method or with a header the route does not allow is a 403 without CORS fields", arguments: [
        ("https://evil.example", "POST", "authorization"),
        ("https://app.example.evil.example", "POST", "authorization"),
        ("http://app.example", "POST", "authorization"),
        ("null", "POST", "authorization"),
        (CORSTests.app, "PUT", "authorization"),
        (CORSTests.app, "POST", "x-debug"),
    ])
    func refusedPreflight(_ origin: String, _ method: String, _ headers: String) throws {
        let response = try preflight("/api/orders", origin: origin, method: method, headers: headers)
        #expect(response.status == 403)
        #expect(response.json["error"] as? String == "cors_refused")
        #expect(corsFields(response).isEmpty, "\(corsFields(response))")
    }

    @Test("the gateway's own refusals carry the CORS fields for an allowed origin: 401, 429 and 502")
    func errorsCarryCORSFields() throws {
        let origin = [("Origin", Self.app)]
        let unauthorized = try gateway.request("GET", "/api/orders", headers: origin)
        #expect(unauthorized.status == 401)
        #expect(unauthorized.header("access-control-allow-origin") == Self.app)
        #expect(unauthorized.header("access-control-allow-credentials") == "true")
        #expect(unauthorized.header("access-control-expose-headers") == "x-request-id")
        #expect(unauthorized.header("vary") == "Origin")

        _ = try gateway.request("GET", "/limited/a", headers: origin)
        let limited = try gateway.request("GET", "/limited/a", headers: origin)
        #expect(limited.status == 429)
        #expect(limited.header("access-control-allow-origin") == Self.app)

        let down = try gateway.request("GET", "/down", headers: origin)
        #expect(down.status == 502)
        #expect(down.header("access-control-allow-origin") == Self.app)
        #expect(down.header("vary") == "Origin")
    }

    @Test("an admitted request from an allowed origin gets the CORS fields on the upstream's response")
    func admittedResponse() throws {
        let token = try issuer.token()
        let response = try gateway.request("GET", "/api/orders", headers: [("Origin", Self.app), ("Authorization", "Bearer \(token)")])
        #expect(response.status == 200)
        #expect(response.header("access-control-allow-origin") == Self.app)
        #expect(response.header("access-control-allow-credentials") == "true")
        #expect(response.header("access-control-expose-headers") == "x-request-id")
        #expect(response.headerValues("vary") == ["Origin"])
    }

    /// The upstream's response also says `Access-Control-Allow-Private-Network: true` and a made-up
    /// `ACCESS-CONTROL-MADE-UP`, beyond the six fields the gateway writes itself.
    @Test("an attacker's origin is never reflected: not on a 401, not on a 200, not from an upstream that allows everyone", arguments: [
        "https://evil.example", "https://app.example.evil.example", "https://evil.example/https://app.example", "null",
    ])
    func attackerOriginNotReflected(_ origin: String) throws {
        let token = try issuer.token()
        for (path, headers) in [("/api/orders", [(String, String)]()), ("/api/orders", [("Authorization", "Bearer \(token)")]), ("/raw/cors-wide-open", [])] {
            let response = try gateway.request("GET", path, headers: [("Origin", origin)] + headers)
            #expect([200, 401].contains(response.status), "\(path): \(response.status)")
            #expect(corsFields(response).isEmpty, "\(path): \(corsFields(response))")
            #expect(response.header("vary") == "Origin", "\(path)")
        }
        // The configured origin is answered on the same upstream response with the route's rules.
        let allowed = try gateway.request("GET", "/raw/cors-wide-open", headers: [("Origin", Self.app)])
        #expect(allowed.header("access-control-allow-origin") == Self.app)
        #expect(allowed.header("access-control-expose-headers") == "x-request-id")
        #expect(allowed.header("access-control-allow-private-network") == nil)
        #expect(allowed.header("access-control-made-up") == nil)
    }

    /// The upstream answers the upgrade with its wide-open 200, which the gateway relays as the
    /// refusal it is, through the WebSocket path's own copy of the upstream's head.
    @Test("on a CORS route with WebSocket, the upstream's answer to an upgrade carries none of its Access-Control-* fields")
    func webSocketAnswerLosesUpstreamCORSFields() throws {
        let response = try gateway.request("GET", "/raw/cors-wide-open", headers: [
            ("Origin", "https://evil.example"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ])
        #expect(response.status == 200, "\(response.status) \(response.text)")
        #expect(corsFields(response).isEmpty, "\(corsFields(response))")
    }

    @Test("a route allowing any origin answers '*', never the request's origin, and no credentials")
    func wildcardOrigin() throws {
        let response = try preflight("/anyone", origin: "https://anywhere.example", method: "GET", headers: "x-custom")
        #expect(response.status == 204)
        #expect(response.header("access-control-allow-origin") == "*")
        #expect(response.header("access-control-allow-credentials") == nil)
        #expect(response.header("access-control-allow-headers") == "x-custom")
        // `*` in allowed_headers never covers Authorization (Fetch).
        #expect(try preflight("/anyone", origin: "https://anywhere.example", method: "GET", headers: "authorization").status == 403)
        let actual = try gateway.request("GET", "/anyone", headers: [("Origin", "https://anywhere.example")])
        #expect(actual.header("access-control-allow-origin") == "*")
    }

    @Test("a preflight to a route without cors is answered as before: a JWT route asks for a token")
    func routeWithoutCORS() throws {
        let response = try preflight("/plain/x")
        #expect(response.status == 401)
        #expect(corsFields(response).isEmpty)
    }

    @Test("over HTTP/2 (h2c) a preflight gets the same 204 without a body, and a 401 the same CORS fields")
    func http2() throws {
        func curl(_ arguments: [String]) throws -> (status: String, headers: [String]) {
            let run = try runCommand("/usr/bin/curl", ["-sS", "-i", "--http2-prior-knowledge"] + arguments)
            #expect(run.status == 0, "\(run.stderr)")
            let lines = run.stdout.components(separatedBy: "\r\n")
            return ((lines.first ?? "").trimmingCharacters(in: .whitespaces), lines.map { $0.lowercased() })
        }
        let base = "http://127.0.0.1:\(gateway.port)"
        let preflight = try curl(["-X", "OPTIONS", "-H", "Origin: \(Self.app)", "-H", "Access-Control-Request-Method: POST",
                                  "-H", "Access-Control-Request-Headers: authorization", base + "/api/orders"])
        #expect(preflight.status == "HTTP/2 204", "\(preflight)")
        #expect(preflight.headers.contains("access-control-allow-origin: \(Self.app)"), "\(preflight)")
        #expect(!preflight.headers.contains { $0.hasPrefix("content-length") || $0.hasPrefix("content-type") }, "\(preflight)")
        let unauthorized = try curl(["-H", "Origin: \(Self.app)", base + "/api/orders"])
        #expect(unauthorized.status == "HTTP/2 401", "\(unauthorized)")
        #expect(unauthorized.headers.contains("access-control-allow-origin: \(Self.app)"), "\(unauthorized)")
        let evil = try curl(["-H", "Origin: https://evil.example", base + "/api/orders"])
        #expect(!evil.headers.contains { $0.hasPrefix("access-control-") }, "\(evil)")
    }
}
