@testable import PortcullisGateway
import PortcullisConfig
import Prometheus
import Testing

@Suite("router")
struct RouterUnitTests {
    func table(_ yaml: String, issuers: Bool = false) throws -> RouteTable {
        let issuerYAML = issuers ? "issuers: [{name: i, issuer: https://i.test, audiences: [a], algorithms: [ES256], jwks_file: /dev/null}]\n" : ""
        let config = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\n" + issuerYAML + "routes:\n" + yaml, file: "t.yaml")
        return try RouteTable(config: config, metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()))
    }

    func name(_ match: RouteMatch) -> String? {
        if case .matched(let route) = match { return route.config.name }
        return nil
    }

    @Test("longest prefix on a segment boundary wins; file order breaks ties")
    func longestPrefix() throws {
        let routes = try table("""
          - {name: root, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}
          - {name: api, path_prefix: /api, methods: [GET, POST], upstream: {targets: [127.0.0.1:1]}}
          - {name: api-v2, path_prefix: /api/v2/, upstream: {targets: [127.0.0.1:1]}}
          - {name: api-again, path_prefix: /api, methods: [GET, DELETE], upstream: {targets: [127.0.0.1:1]}}
        """)
        #expect(name(routes.router.match(host: nil, path: "/api/v2/x", method: "GET")) == "api-v2")
        #expect(name(routes.router.match(host: nil, path: "/api/v2", method: "GET")) == "api-v2")
        // Both /api routes take GET: the first in the file does; DELETE only the second.
        #expect(name(routes.router.match(host: nil, path: "/api/v1", method: "GET")) == "api")
        #expect(name(routes.router.match(host: nil, path: "/api/v1", method: "DELETE")) == "api-again")
        #expect(name(routes.router.match(host: nil, path: "/apix", method: "GET")) == "root")
        #expect(name(routes.router.match(host: nil, path: "/", method: "GET")) == "root")
    }

    /// Rails' `(.:format)` and Spring MVC's suffix patterns serve `/api.json` as `/api`: the
    /// build before matched it against `/` (an attacker review reached a JWT route's action so).
    @Test("a prefix's last segment with a format suffix (/api.json, /api.json/) belongs to the prefix's route, a dotted segment with more below it (/api.v1/x) does not; a longer prefix with the dot still wins")
    func formatSuffixBelongsToThePrefix() throws {
        let routes = try table("""
          - {name: root, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}
          - {name: api, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}
          - {name: api-v2, path_prefix: /api.v2, upstream: {targets: [127.0.0.1:1]}}
        """)
        #expect(name(routes.router.match(host: nil, path: "/api.json", method: "GET")) == "api")
        #expect(name(routes.router.match(host: nil, path: "/api.html/", method: "GET")) == "api")
        #expect(name(routes.router.match(host: nil, path: "/api.v2/x", method: "GET")) == "api-v2")
        #expect(name(routes.router.match(host: nil, path: "/apijson", method: "GET")) == "root")
        // Only a suffix of the last segment: a dot-named segment with more below it is not one.
        #expect(name(routes.router.match(host: nil, path: "/api.v1/x", method: "GET")) == "root")
        #expect(name(routes.router.match(host: nil, path: "/api.json//", method: "GET")) == "root")
    }

    @Test("host routes shadow host-less ones; methods give 405 with the allowed list")
    func hostsAndMethods() throws {
        let routes = try table("""
          - {name: any, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}
          - {name: special, host: Special.Test, path_prefix: /x, methods: [get, post], upstream: {targets: [127.0.0.1:1]}}
        """)
        #expect(name(routes.router.match(host: "special.test", path: "/x/1", method: "GET")) == "special")
        #expect(name(routes.router.match(host: "special.test", path: "/y", method: "GET")) == "any")
        #expect(name(routes.router.match(host: "other.test", path: "/x/1", method: "GET")) == "any")
        guard case .methodNotAllowed(let allowed) = routes.router.match(host: "special.test", path: "/x", method: "DELETE") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["GET", "POST"])
    }

    /// Found while writing the request-head fuzz target's route oracle: the router used to try
    /// shorter prefixes, so DELETE /admin/users reached the public catch-all.
    @Test("a method the longest matching prefix does not list is 405, never a shorter prefix's route")
    func methodDoesNotFallThrough() throws {
        let routes = try table("""
          - {name: public, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}
          - {name: admin, path_prefix: /admin, methods: [GET, POST], upstream: {targets: [127.0.0.1:1]}, auth: {type: jwt}}
          - {name: admin-put, path_prefix: /admin, methods: [PUT], upstream: {targets: [127.0.0.1:1]}}
        """, issuers: true)
        guard case .methodNotAllowed(let allowed) = routes.router.match(host: nil, path: "/admin/users", method: "DELETE") else {
            Issue.record("DELETE /admin/users was routed")
            return
        }
        #expect(allowed == ["GET", "POST", "PUT"])
        #expect(name(routes.router.match(host: nil, path: "/admin/users", method: "PUT")) == "admin-put")
        #expect(name(routes.router.match(host: nil, path: "/other", method: "DELETE")) == "public")
    }

    @Test("no match is notFound")
    func notFound() throws {
        let routes = try table("  - {name: api, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}\n")
        guard case .notFound = routes.router.match(host: nil, path: "/other", method: "GET") else {
            Issue.record("expected notFound")
            return
        }
    }
}

@Suite("request policy configuration")
struct RequestPolicyConfigTests {
    func parse(_ yaml: String) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\n" + yaml, file: "gw.yaml")
    }

    static let route = "routes: [{name: r, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}]"

    @Test("identity_headers may not name framing, connection, Host, forwarding or underscored fields", arguments: [
        "Content-Length", "transfer-encoding", "Host", "Connection", "Upgrade", "X-Forwarded-For", "Forwarded", "X-Request-Id", "X_Auth_User",
    ])
    func identityHeaderNames(_ name: String) {
        do {
            _ = try parse("identity_headers: {sub: \(name)}\n" + Self.route)
            Issue.record("\(name) was accepted")
        } catch let error as ConfigError {
            #expect(error.description.contains("gw.yaml:2"), "\(error)")
            #expect(error.description.contains(name), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("the http section reads its options and refuses unknown values naming the choices")
    func httpSection() throws {
        let config = try parse("""
        http:
          path: {dot_segments: resolve, duplicate_slashes: reject, escaped_slashes: keep, semicolons: keep, case_sensitive: true}
          headers_with_underscores: reject
          rate_limit_headers: legacy
        \(Self.route)
        """)
        #expect(config.http.path.dotSegments == .resolve)
        #expect(config.http.path.duplicateSlashes == .reject)
        #expect(config.http.path.escapedSlashes == .keep)
        #expect(config.http.path.semicolons == .keep)
        #expect(config.http.path.caseSensitive)
        #expect(config.http.headersWithUnderscores == .reject)
        #expect(config.http.rateLimitHeaders == .legacy)
        #expect(try parse(Self.route).http == RequestPolicy())
        #expect(RequestPolicy().rateLimitHeaders == .draft)
        do {
            _ = try parse("http: {headers_with_underscores: maybe}\n" + Self.route)
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("drop, reject, allow"), "\(error)")
        }
        do {
            _ = try parse("http: {rate_limit_headers: v1}\n" + Self.route)
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("draft, legacy"), "\(error)")
        }
    }

    @Test("a path_prefix outside the normal form is refused, since no normalised path could match it", arguments: [
        "/a//b", "/%61pi", "/a/../b", "/a;b",
    ])
    func prefixNormalForm(_ prefix: String) {
        #expect(throws: ConfigError.self) {
            try parse("routes: [{name: r, path_prefix: '\(prefix)', upstream: {targets: [127.0.0.1:1]}}]")
        }
    }

    /// The build before loaded (and reloaded) such a config: a public route added above the JWT
    /// one took its requests, unauthenticated, without a word (an attacker review).
    @Test("a route that an earlier one with the same host and prefix shadows for all its methods is a configuration error naming both; one with other methods, another prefix or another host is not")
    func shadowedRoutesRefused() throws {
        func routes(_ list: String...) -> String {
            "routes:\n" + list.map { "  - {\($0), upstream: {targets: [127.0.0.1:1]}}\n" }.joined()
        }
        for shadowed in [
            routes("name: open, path_prefix: /orders", "name: orders, path_prefix: /orders, strip_prefix: true"),
            routes("name: open, path_prefix: /orders/", "name: orders, path_prefix: /Orders, methods: [GET]"),
            routes("name: open, path_prefix: /orders, methods: [GET, POST]", "name: orders, path_prefix: /orders, methods: [POST]"),
            routes("name: open, host: a.example, path_prefix: /x", "name: orders, host: A.example, path_prefix: /x"),
        ] {
            do {
                _ = try parse(shadowed)
                Issue.record("accepted: \(shadowed)")
            } catch {
                #expect("\(error)".contains("route 'orders' is never reached: route 'open' before it"), "\(error)")
                #expect("\(error)".hasPrefix("gw.yaml:4:"), "\(error)")
            }
        }
        for distinct in [
            routes("name: open, path_prefix: /orders, methods: [GET]", "name: orders, path_prefix: /orders"),
            routes("name: open, path_prefix: /orders, methods: [GET]", "name: orders, path_prefix: /orders, methods: [DELETE, GET]"),
            routes("name: open, path_prefix: /order", "name: orders, path_prefix: /orders"),
            routes("name: open, host: a.example, path_prefix: /x", "name: orders, path_prefix: /x"),
        ] {
            #expect(throws: Never.self) { _ = try parse(distinct) }
        }
        #expect(throws: Never.self) {
            _ = try parse("http: {path: {case_sensitive: true}}\n" + routes("name: open, path_prefix: /orders", "name: orders, path_prefix: /Orders"))
        }
    }

    @Test("prefixes match without regard to case unless case_sensitive")
    func caseSensitivity() throws {
        let insensitive = try RouteTable(config: try parse(Self.route), metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()))
        guard case .matched = insensitive.router.match(host: nil, path: "/API/x", method: "GET") else {
            Issue.record("/API/x did not match /api")
            return
        }
        let sensitive = try RouteTable(config: try parse("http: {path: {case_sensitive: true}}\n" + Self.route),
                                       metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()))
        guard case .notFound = sensitive.router.match(host: nil, path: "/API/x", method: "GET") else {
            Issue.record("/API/x matched /api with case_sensitive")
            return
        }
    }
}
