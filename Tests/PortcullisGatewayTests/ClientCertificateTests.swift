import Crypto
import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// A real gateway whose TLS listener verifies client certificates, spoken to with curl: routes
/// that need a certificate, and RFC 8705 certificate-bound tokens presented with the right
/// certificate, another one, or none.
@Suite("gateway: client certificates and certificate-bound tokens", .serialized)
final class ClientCertificateTests {
    let upstream: TestUpstream
    let issuer: TestIssuer
    let gateway: GatewayProcess
    let server: TestCertificateAuthority
    let clients: TestCertificateAuthority

    init() async throws {
        upstream = try await TestUpstream.start()
        let issuer = try TestIssuer()
        self.issuer = issuer
        let server = try TestCertificateAuthority.make(name: "Gateway CA")
        let clients = try TestCertificateAuthority.make(name: "Client CA")
        self.server = server
        self.clients = clients
        let leaf = try server.issue("gateway")
        let upstreamAddress = upstream.address
        gateway = try await GatewayProcess.start { port, adminPort, directory in
            let issuers = (try? issuer.issuersYAML(directory: directory)) ?? ""
            return """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            tls:
              certificate_chain: \(leaf.certificate)
              private_key: \(leaf.privateKey)
              client_ca: \(clients.certificate)
              client_certificates: optional
            \(issuers)
            routes:
              - name: partners
                path_prefix: /partners
                require_client_certificate: true
                upstream: {targets: [\(upstreamAddress)]}
              - name: api
                path_prefix: /api
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

    func curl(_ path: String, certificate: TestCertificateAuthority.Leaf? = nil, token: String? = nil) throws -> (status: Int, body: String) {
        var arguments = ["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--cacert", server.certificate]
        if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        let result = try runCommand("/usr/bin/curl", arguments + ["https://localhost:\(gateway.port)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// RFC 8705 `x5t#S256` of a PEM certificate: base64url SHA-256 of its DER.
    static func thumbprint(_ pemFile: String) throws -> String {
        let der = try runCommand("/usr/bin/openssl", ["x509", "-in", pemFile, "-outform", "DER", "-out", pemFile + ".der"])
        #expect(der.status == 0)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: pemFile + ".der"))
        return Base64URL.encode(Array(SHA256.hash(data: bytes)))
    }

    @Test("a route requiring a client certificate refuses connections without a verified one")
    func routeRequiresCertificate() throws {
        let partner = try clients.issue("partner-1")
        #expect(try curl("/partners/x").status == 403)
        #expect(try curl("/partners/x", certificate: partner).status == 200)
        // A certificate another CA signed never gets through the handshake.
        let stranger = try TestCertificateAuthority.make(name: "Stranger").issue("partner-1")
        #expect(try curl("/partners/x", certificate: stranger).status == 0)
    }

    /// The attacker holds a stolen bound token and a certificate of their own (the same CA signed
    /// it), or none: the binding must refuse both.
    @Test("a certificate-bound token passes only with the certificate it is bound to")
    func boundToken() throws {
        let holder = try clients.issue("holder")
        let thief = try clients.issue("thief")
        let token = try issuer.token(extra: ["cnf": .object(["x5t#S256": .string(try Self.thumbprint(holder.certificate))])])
        #expect(try curl("/api/x", certificate: holder, token: token).status == 200)
        let stolen = try curl("/api/x", certificate: thief, token: token)
        #expect(stolen.status == 401)
        #expect(stolen.body.contains("invalid_token"))
        #expect(try curl("/api/x", token: token).status == 401)
        // An unbound token stays a bearer token, with or without a certificate.
        let bearer = try issuer.token()
        #expect(try curl("/api/x", token: bearer).status == 200)
        #expect(try curl("/api/x", certificate: thief, token: bearer).status == 200)
        // A confirmation method the gateway cannot check is refused, not ignored.
        let dpop = try issuer.token(extra: ["cnf": .object(["jkt": .string("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")])])
        #expect(try curl("/api/x", certificate: holder, token: dpop).status == 401)
        let metrics = try gateway.metrics()
        #expect(metrics.contains(#"portcullis_auth_decisions_total{route="api",reason="certificate_binding"} 2"#))
    }
}
