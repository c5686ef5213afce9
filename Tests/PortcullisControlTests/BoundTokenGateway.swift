import PortcullisTestSupport

/// A gateway process over HTTPS that verifies client certificates against `clientCA` (a PEM
/// bundle) and accepts tokens of the control plane's built-in issuer from the cluster: the
/// receiving side of the certificate-bound token tests.
enum BoundTokenGateway {
    static func start(serverCA: TestCertificateAuthority, clientCA: String, issuer: String, redisURL: String, secret: String,
                      upstream: TestUpstream) async throws -> GatewayProcess {
        let leaf = try serverCA.issue("localhost")
        return try await GatewayProcess.start { port, admin, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(admin)
            event_loops: 1
            tls:
              certificate_chain: \(leaf.certificate)
              private_key: \(leaf.privateKey)
              client_ca: \(clientCA)
            issuers:
              - {name: builtin, issuer: \(issuer), audiences: [api://demo], algorithms: [ES256]}
            cluster: {redis: \(redisURL), secret: \(secret), heartbeat_interval: 300ms}
            routes:
              - {name: api, path_prefix: /, upstream: {targets: [\(upstream.address)]}, auth: {type: jwt}}
            """
        }
    }
}
