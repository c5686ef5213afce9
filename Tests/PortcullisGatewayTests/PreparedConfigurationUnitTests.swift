@testable import PortcullisGateway
import PortcullisConfig
import PortcullisJOSE
import Prometheus
import Testing

/// What building a reloaded configuration refuses before anything is swapped (`PreparedConfiguration`).
@Suite("prepared configuration")
struct PreparedConfigurationUnitTests {
    static func config(issuers: String) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: """
            listen: 127.0.0.1:1
            cluster: {redis: 'redis://127.0.0.1:1', secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA}
            issuers:
            \(issuers)
            routes: [{name: r, path_prefix: /, upstream: {targets: ['127.0.0.1:2']}}]
            """, file: "gateway.yaml")
    }

    static func build(_ config: GatewayConfig, running: GatewayConfig) async throws {
        _ = try await PreparedConfiguration.build(config, running: running, offerHTTP2: true,
                                                  metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()),
                                                  httpClient: JWKSDownloader.sharedHTTPClient)
    }

    static let first = "  - {name: a, issuer: 'https://a.test', audiences: [x], algorithms: [ES256]}"
    static let second = "  - {name: b, issuer: 'https://b.test', audiences: [x], algorithms: [ES256]}"

    @Test("in a cluster, a reload may change an issuer's audiences but not which issuers take keys from the cluster")
    func clusterIssuers() async throws {
        let running = try Self.config(issuers: Self.first)
        try await Self.build(try Self.config(issuers: Self.first.replacingOccurrences(of: "[x]", with: "[x, y]")), running: running)
        let error = await #expect(throws: ConfigError.self) {
            try await Self.build(try Self.config(issuers: Self.first + "\n" + Self.second), running: running)
        }
        #expect(error?.keyPath == "issuers")
        #expect(error?.description.contains("added: b https://b.test") == true, "\(String(describing: error))")
    }
}
