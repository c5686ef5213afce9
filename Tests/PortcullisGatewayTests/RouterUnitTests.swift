@testable import PortcullisGateway
import Prometheus
import Testing

@Suite("router")
struct RouterUnitTests {
    func table(_ yaml: String) throws -> RouteTable {
        let config = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\nroutes:\n" + yaml, file: "t.yaml")
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
          - {name: api, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}
          - {name: api-v2, path_prefix: /api/v2/, upstream: {targets: [127.0.0.1:1]}}
          - {name: api-again, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}
        """)
        #expect(name(routes.router.match(host: nil, path: "/api/v2/x", method: "GET")) == "api-v2")
        #expect(name(routes.router.match(host: nil, path: "/api/v2", method: "GET")) == "api-v2")
        #expect(name(routes.router.match(host: nil, path: "/api/v1", method: "GET")) == "api")
        #expect(name(routes.router.match(host: nil, path: "/apix", method: "GET")) == "root")
        #expect(name(routes.router.match(host: nil, path: "/", method: "GET")) == "root")
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

    @Test("no match is notFound")
    func notFound() throws {
        let routes = try table("  - {name: api, path_prefix: /api, upstream: {targets: [127.0.0.1:1]}}\n")
        guard case .notFound = routes.router.match(host: nil, path: "/other", method: "GET") else {
            Issue.record("expected notFound")
            return
        }
    }
}
