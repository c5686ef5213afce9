@testable import PortcullisGateway
import Foundation
import PortcullisCluster
import PortcullisJOSE
import Prometheus

/// A gateway's shared state built in process from a config's text — parsed config, route table,
/// JWT verifier over `TestIssuer`'s keys, a revocation set and the local rate limiter — for tests
/// of the request path's pieces without sockets.
struct InProcessGateway {
    let issuer: TestIssuer
    let table: RouteTable
    let context: GatewayContext

    /// `yaml` holds the config's `routes` (and any other sections but `listen`, `realm`, `tls`
    /// and `issuers`, which this adds; `tls` names files that are never read, so that routes may
    /// require a client certificate). `cache` is the verifier's, as a gateway process has one.
    init(revocations: RevocationSet = RevocationSet(), cache: VerifiedTokenCache? = nil, yaml: String) throws {
        issuer = try TestIssuer()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("in-process-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try GatewayConfig.parse(yaml: """
            listen: 127.0.0.1:1
            realm: tests
            tls: {certificate_chain: chain.pem, private_key: key.pem, client_ca: ca.pem}
            \(try issuer.issuersYAML(directory: directory))
            \(yaml)
            """, file: directory + "/gateway.yaml")
        let keys = KeySetStore()
        keys.replace(issuerName: "test", keySet: try JWKSet.parse(Array(issuer.jwks.utf8), issuer: config.issuers[0], logger: nil), version: nil)
        let metrics = GatewayMetrics(registry: PrometheusCollectorRegistry())
        let authenticator = Authenticator(verifier: JWTVerifier(issuers: config.issuers, keys: keys, cache: cache), revocation: revocations)
        table = try RouteTable(config: config, metrics: metrics, authenticator: authenticator)
        context = GatewayContext(routes: table, metrics: metrics, revocation: revocations, rateLimiter: LocalRateLimiter(), accessLog: nil)
    }
}
