import Foundation
@testable import PortcullisGateway
import PortcullisObservability
import Prometheus
import Testing

@Suite("metrics")
struct MetricsUnitTests {
    @Test("histogram bounds are written as Prometheus' Go client writes them, whatever Swift's spelling")
    func bucketBoundsAreCanonical() {
        for (swift, go) in [("1.0", "1"), ("10.0", "10"), ("0.0", "0"), ("2.5", "2.5"), ("5e-05", "5e-05"), ("0.0001", "0.0001"),
                            ("0.00025", "0.00025"), ("5.0", "5"), ("1000.0", "1000"), ("+Inf", "+Inf"), ("1e+21", "1e+21")] {
            #expect(Exposition.canonicalBound(swift) == go, "\(swift)")
        }
        let text = """
            # HELP x_seconds A histogram; an le=\"1.0\" in help text stays.
            x_seconds_bucket{route="a",le="1.0"} 3
            x_seconds_bucket{le="0.00025"} 1
            x_seconds_bucket{route="a,le=\\"2.0\\"",le="+Inf"} 4
            x_seconds_bucket{route="b\\\\",le="5.0"} 4
            y_total{code="200"} 7

            """
        let expected = """
            # HELP x_seconds A histogram; an le=\"1.0\" in help text stays.
            x_seconds_bucket{route="a",le="1"} 3
            x_seconds_bucket{le="0.00025"} 1
            x_seconds_bucket{route="a,le=\\"2.0\\"",le="+Inf"} 4
            x_seconds_bucket{route="b\\\\",le="5"} 4
            y_total{code="200"} 7

            """
        #expect(String(decoding: Exposition.canonicalizingBuckets(Array(text.utf8)), as: UTF8.self) == expected)
    }

    @Test("a real registry's histograms come out with canonical bounds")
    func registryExposition() {
        let registry = PrometheusCollectorRegistry()
        registry.valueHistogram("v_seconds", buckets: [0.5, 1, 10], help: "v").record(0.7)
        registry.durationHistogram("d_seconds", buckets: [.milliseconds(250), .seconds(1)], help: "d").record(.milliseconds(100))
        let text = String(decoding: Exposition.render(registry), as: UTF8.self)
        #expect(text.contains(#"v_seconds_bucket{le="1"} 1"#))
        #expect(text.contains(#"v_seconds_bucket{le="10"} 1"#))
        #expect(text.contains(#"d_seconds_bucket{le="0.25"} 1"#))
        #expect(text.contains(#"d_seconds_bucket{le="1"} 1"#))
        #expect(!text.contains(#".0""#))
    }

    @Test("requests are counted by exact status and method; an unknown method is 'other'; a connection's cached counter follows route, method and code")
    func requestCounters() {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        let route = metrics.route("r"), other = metrics.route("s")
        // One connection's cache through changes of code, method and route, as a keep-alive
        // connection's responses go.
        var cache: ResponseCounterCache?
        route.countResponse(method: "GET", status: 200, cache: &cache)
        route.countResponse(method: "GET", status: 200, cache: &cache)
        route.countResponse(method: "GET", status: 404, cache: &cache)
        route.countResponse(method: "BREW", status: 418, cache: &cache)
        route.countResponse(method: "POST", status: 503, cache: &cache)
        other.countResponse(method: "POST", status: 503, cache: &cache)
        var second: ResponseCounterCache?
        route.countResponse(method: "GET", status: 200, cache: &second)
        let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="200"} 3"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="404"} 1"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="other",code="418"} 1"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="POST",code="503"} 1"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="s",method="POST",code="503"} 1"#))
        #expect(!text.contains("BREW"))
    }

    @Test("a status code nobody registered is counted by its class, so an upstream cannot grow the series; 499 stays exact")
    func unregisteredCodesByClass() {
        let registry = PrometheusCollectorRegistry()
        let route = GatewayMetrics(registry: registry).route("r")
        var cache: ResponseCounterCache?
        for status in [432, 433, 477, 499, 418, 599, 1000] { route.countResponse(method: "GET", status: status, cache: &cache) }
        let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="4xx"} 3"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="499"} 1"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="418"} 1"#))
        #expect(text.contains(#"portcullis_http_requests_total{route="r",method="GET",code="5xx"} 2"#))
        #expect(!text.contains(#"code="432""#))
    }

    @Test("refusals of verified tokens are counted per client for the first 100 clients of a route, the rest as other")
    func clientRejectionsBounded() {
        let registry = PrometheusCollectorRegistry()
        let route = GatewayMetrics(registry: registry).route("r")
        for index in 0..<(RouteMetrics.maxClients + 5) { route.authRejected("revoked", client: "client-\(index)") }
        route.authRejected("revoked", client: "client-0")
        route.authRejected("revoked", client: "late-1")
        let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        #expect(text.contains(#"portcullis_auth_client_rejections_total{route="r",client="client-0",reason="revoked"} 2"#))
        #expect(text.contains(#"portcullis_auth_client_rejections_total{route="r",client="client-99",reason="revoked"} 1"#))
        #expect(!text.contains(#"client="client-100""#))
        #expect(text.contains(#"portcullis_auth_client_rejections_total{route="r",client="other",reason="revoked"} 6"#))
    }

    @Test("a gateway's default node id is its host name and listen port, the same across restarts")
    func defaultNodeID() throws {
        let config = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:8443\nroutes: [{name: r, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}]\n", file: "t.yaml")
        #expect(config.nodeID == ProcessInfo.processInfo.hostName + "-8443")
        var moved = config
        moved.listen.port = 9443
        #expect(moved.nodeID == ProcessInfo.processInfo.hostName + "-9443")
        moved.nodeID = "gw-7"
        #expect(moved.nodeID == "gw-7")
        let ephemeral = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:0\nroutes: [{name: r, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}]\n", file: "t.yaml")
        #expect(ephemeral.nodeID == "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)")
    }
}
