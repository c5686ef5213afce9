import Crypto
import Foundation
import PortcullisJOSE
@testable import PortcullisControl
import PortcullisTestSupport
import Testing

@Suite("control config: self_signed_tls_client_auth registrations")
struct SelfSignedClientConfigTests {
    @Test("self-signed client registrations: thumbprints and JWK sets are read, every mistake names file, line and key")
    func registrations() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ss-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try TestCertificateAuthority.make().issue("control")
        let robot = try TestCertificateAuthority.selfSigned(subject: "/CN=robot-1")
        let der = try runCommand("/bin/sh", ["-c", "openssl x509 -in '\(robot.certificate)' -outform DER | base64 -w0"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let digest = Array(SHA256.hash(data: try #require(Data(base64Encoded: der))))
        let thumbprint = Base64URL.encode(digest)

        let file = directory + "/c.yaml"
        func load(_ yaml: String) throws -> ControlConfig {
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            return try ControlConfig.load(file: file)
        }
        func error(_ yaml: String) -> String {
            do { _ = try load(yaml); return "" } catch { return "\(error)" }
        }
        func jwks(_ name: String, _ text: String) throws -> String {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
            return name
        }
        let head = """
        cluster: {redis: redis://127.0.0.1:1, secret: \(Base64URL.encode([UInt8](repeating: 1, count: 32)))}
        admin_tokens: [{name: ops, sha256: \(Hex.sha256("x"))}]

        """
        let tls = "tls: {certificate_chain: \(server.certificate), private_key: \(server.privateKey)}\n"
        let server0 = "authorization_server:\n  issuer: http://127.0.0.1:9000\n  audience: a\n  clients:\n"
        func client(_ keys: String) -> String { server0 + "    - {client_id: robot, \(keys)}\n" }

        // Accepted: base64url, hex with colons, a JWK set; the listener then asks for certificates
        // (optional: secret clients need none) although it has no client_ca.
        let config = try load(head + tls + client("self_signed_certificate_sha256: [\(thumbprint)]"))
        #expect(config.authorizationServer?.clients.first?.selfSignedCertificates == [digest])
        #expect(config.tls?.clientCertificates == .optional)
        #expect(config.tls?.selfSignedClientCertificates == [digest])
        #expect(config.adminTLS == nil)
        let colons = digest.map { String(format: "%02X", $0) }.joined(separator: ":")
        #expect(try load(head + tls + client("self_signed_certificate_sha256: \"\(colons)\"")).authorizationServer?.clients.first?.selfSignedCertificates == [digest])
        let good = try jwks("good.json", #"{"keys":[{"kty":"EC","x5c":["\#(der)"]}]}"#)
        #expect(try load(head + tls + client("self_signed_jwks_file: \(good)")).authorizationServer?.clients.first?.selfSignedCertificates == [digest])

        // Thumbprints.
        let short = error(head + tls + client("self_signed_certificate_sha256: [abc]"))
        #expect(short.contains("c.yaml:8:"), "\(short)")
        #expect(short.contains("authorization_server.clients[0].self_signed_certificate_sha256[0]: expected the SHA-256"), "\(short)")
        #expect(error(head + tls + client("self_signed_certificate_sha256: []")).contains("clients[0].self_signed_certificate_sha256: list at least one"))
        // One method per client.
        #expect(error(head + tls + client("secret_sha256: \(Hex.sha256("s")), self_signed_certificate_sha256: [\(thumbprint)]"))
            .contains("clients[0].secret_sha256"))
        #expect(error(head + tls + client("tls_client_auth_subject_dn: CN=robot-1, self_signed_certificate_sha256: [\(thumbprint)]"))
            .contains("clients[0].self_signed_certificate_sha256: a client authenticates with tls_client_auth_subject_dn or a self-signed certificate"))
        #expect(error(head + tls + client("scopes: [a]")).contains("needs secret_sha256, tls_client_auth_subject_dn, self_signed_certificate_sha256 or self_signed_jwks_file"))
        // A certificate identifies one client.
        let twice = server0 + "    - {client_id: a, self_signed_certificate_sha256: [\(thumbprint)]}\n    - {client_id: b, self_signed_jwks_file: \(good)}\n"
        #expect(error(head + tls + twice).contains("clients[1].self_signed_jwks_file: certificate \(thumbprint) is already registered for client 'a'"))
        // The certificate comes in the TLS handshake of the public listener.
        #expect(error(head + client("self_signed_certificate_sha256: [\(thumbprint)]"))
            .contains("clients[0].self_signed_certificate_sha256: self_signed_tls_client_auth needs tls: on the public listener"))
        let none = "tls: {certificate_chain: \(server.certificate), private_key: \(server.privateKey), client_certificates: none}\n"
        #expect(error(head + none + client("self_signed_certificate_sha256: [\(thumbprint)]")).contains("c.yaml:3:"))
        #expect(error(head + none + client("self_signed_certificate_sha256: [\(thumbprint)]")).contains("tls.client_certificates: self_signed_tls_client_auth"))
        // Without self-signed clients, client_certificates still needs client_ca.
        let optional = "tls: {certificate_chain: \(server.certificate), private_key: \(server.privateKey), client_certificates: optional}\n"
        #expect(error(head + optional).contains("client_certificates: optional needs client_ca"))

        // JWK sets.
        #expect(error(head + tls + client("self_signed_jwks_file: missing.json")).contains("clients[0].self_signed_jwks_file: cannot read"))
        let notJSON = try jwks("bad.json", "{keys")
        #expect(error(head + tls + client("self_signed_jwks_file: \(notJSON)")).contains("invalid JSON"))
        let noX5c = try jwks("nox5c.json", #"{"keys":[{"kty":"EC","crv":"P-256"}]}"#)
        #expect(error(head + tls + client("self_signed_jwks_file: \(noX5c)")).contains("keys[0] has no x5c"))
        let notCertificate = try jwks("notcert.json", #"{"keys":[{"kty":"EC","x5c":["AAEC"]}]}"#)
        #expect(error(head + tls + client("self_signed_jwks_file: \(notCertificate)")).contains("keys[0].x5c[0] is not an X.509 certificate"))
        let empty = try jwks("empty.json", #"{"keys":[]}"#)
        #expect(error(head + tls + client("self_signed_jwks_file: \(empty)")).contains("the JWK set has no keys"))
    }
}
