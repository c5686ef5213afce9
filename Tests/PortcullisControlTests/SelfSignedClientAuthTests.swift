import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// RFC 8705 §2.2 `self_signed_tls_client_auth` with real processes, spoken to with curl: clients
/// registered with self-signed certificates (by thumbprint, or in a JWK set's `x5c`) get tokens
/// bound to them. The tests play the attacker: a certificate with the right subject but another
/// key, a self-signed copy of a CA-verified client's subject, no certificate at all.
@Suite("self_signed_tls_client_auth at the built-in authorization server", .serialized)
struct SelfSignedClientAuthTests {
    struct Setup {
        let redis: RedisServerFixture
        let directory: String
        let serverCA: TestCertificateAuthority
        let clientCA: TestCertificateAuthority
        /// `tls_client_auth` client `partner`: a certificate `clientCA` signed for CN=partner-1.
        let partner: TestCertificateAuthority.Leaf
        /// `self_signed_tls_client_auth` client `robot`, registered by its `x5t#S256`.
        let robot: TestCertificateAuthority.Leaf
        /// `self_signed_tls_client_auth` client `fleet`, registered in a JWK set (`x5c`).
        let fleet: TestCertificateAuthority.Leaf
        /// `self_signed_tls_client_auth` client `mimic`, registered by its hex fingerprint: a
        /// self-signed certificate whose subject copies partner's (CN=partner-1).
        let mimic: TestCertificateAuthority.Leaf
        let secret: String
        let port: Int
        let control: ManagedProcess

        var issuer: String { "https://localhost:\(port)" }

        /// `client_credentials` for `clientID` with no secret, over a connection presenting
        /// `certificate` (or none). Status 0: no HTTP answer (the handshake failed).
        func token(_ clientID: String, certificate: TestCertificateAuthority.Leaf?) throws -> (status: Int, body: String) {
            var arguments = ["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--cacert", serverCA.certificate,
                             "--data", "grant_type=client_credentials&client_id=\(clientID)"]
            if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
            let result = try runCommand("/usr/bin/curl", arguments + ["\(issuer)/oauth2/token"])
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }

        func accessToken(_ clientID: String, certificate: TestCertificateAuthority.Leaf) throws -> String {
            let issued = try token(clientID, certificate: certificate)
            guard issued.status == 200,
                  let token = (try JSONSerialization.jsonObject(with: Data(issued.body.utf8)) as? [String: Any])?["access_token"] as? String else {
                throw FixtureError("no token for \(clientID): \(issued)")
            }
            return token
        }
    }

    /// A refusal the RFC 6749 §5.2 way.
    static func isInvalidClient(_ response: (status: Int, body: String)) -> Bool {
        response.status == 401 && response.body.contains("\"invalid_client\"")
    }

    /// The DER certificate, standard base64 (a JWK's `x5c` entry).
    static func derBase64(_ pemFile: String) throws -> String {
        let result = try runCommand("/bin/sh", ["-c", "openssl x509 -in '\(pemFile)' -outform DER | base64 -w0"])
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `AB:CD:…` as `openssl x509 -fingerprint -sha256` prints it.
    static func hexFingerprint(_ pemFile: String) throws -> String {
        let result = try runCommand("/usr/bin/openssl", ["x509", "-in", pemFile, "-noout", "-fingerprint", "-sha256"])
        return String(result.stdout.split(separator: "=").last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func withControl(clientCertificates: String = "optional", _ body: (Setup) async throws -> Void) async throws {
        let redis = try await RedisServerFixture.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-self-signed")
        let serverCA = try TestCertificateAuthority.make(name: "Server CA")
        let clientCA = try TestCertificateAuthority.make(name: "Client CA")
        let serverLeaf = try serverCA.issue("localhost")
        let partner = try clientCA.issue("partner-1")
        let robot = try TestCertificateAuthority.selfSigned(subject: "/CN=robot-1")
        let fleet = try TestCertificateAuthority.selfSigned(subject: "/CN=fleet-7")
        let mimic = try TestCertificateAuthority.selfSigned(subject: "/CN=partner-1")
        try #"{"keys":[{"kty":"EC","crv":"P-256","use":"sig","x5c":["\#(try Self.derBase64(fleet.certificate))"]}]}"#
            .write(toFile: directory + "/fleet.jwks.json", atomically: true, encoding: .utf8)
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let secret = Base64URL.encode([UInt8](repeating: 6, count: 32))
        try """
        node_id: control-self-signed
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        cluster: {redis: \(redis.url), secret: \(secret), heartbeat_interval: 300ms}
        tls:
          certificate_chain: \(serverLeaf.certificate)
          private_key: \(serverLeaf.privateKey)
          client_ca: \(clientCA.certificate)
          client_certificates: \(clientCertificates)
        admin_tokens:
          - {name: ops, sha256: \(sha256Hex(ControlCluster.adminToken))}
        authorization_server:
          issuer: https://localhost:\(port)
          audience: api://demo
          key_encryption_key_file: kek.secret
          clients:
            - {client_id: partner, tls_client_auth_subject_dn: "CN=partner-1", scopes: [orders:read]}
            - {client_id: robot, self_signed_certificate_sha256: [\(try ClientCertificateThumbprint.of(robot.certificate))], scopes: [orders:read]}
            - {client_id: fleet, self_signed_jwks_file: fleet.jwks.json, scopes: [orders:read]}
            - {client_id: mimic, self_signed_certificate_sha256: ["\(try Self.hexFingerprint(mimic.certificate))"], scopes: [orders:read]}
        """.write(toFile: directory + "/control.yaml", atomically: true, encoding: .utf8)
        let control = try ManagedProcess(executable: PortcullisBinary.path, arguments: ["control", "--config", directory + "/control.yaml"],
                                         logFile: directory + "/control.log")
        let setup = Setup(redis: redis, directory: directory, serverCA: serverCA, clientCA: clientCA, partner: partner, robot: robot,
                          fleet: fleet, mimic: mimic, secret: secret, port: port, control: control)
        try await withCleanup(setup, { setup in
            await setup.control.terminate(timeout: .seconds(10))
            await setup.redis.shutdown()
        }) { setup in
            let ready = try await Poll.until(timeout: .seconds(20)) {
                // A registered certificate gets through the handshake whatever client_certificates says.
                try ControlTLSTests.curl("\(setup.issuer)/oauth2/jwks", ca: serverCA.certificate, certificate: robot).body.contains("\"kid\"")
            }
            guard ready else { throw FixtureError("the authorization server did not come up:\n\(control.output)") }
            try await body(setup)
        }
    }

    @Test("a self-signed client gets a token bound to its certificate, which a gateway accepts only with that certificate")
    func boundTokenEndToEnd() async throws {
        try await withControl { setup in
            let metadata = try ControlTLSTests.curl("\(setup.issuer)/.well-known/oauth-authorization-server", ca: setup.serverCA.certificate)
            #expect(metadata.body.contains("\"self_signed_tls_client_auth\""), "\(metadata.body)")

            let token = try setup.accessToken("robot", certificate: setup.robot)
            #expect((claims(of: token)["cnf"] as? [String: Any])?["x5t#S256"] as? String == (try ClientCertificateThumbprint.of(setup.robot.certificate)))
            // Registered in a JWK set instead of by thumbprint: the same.
            let fleetToken = try setup.accessToken("fleet", certificate: setup.fleet)
            #expect((claims(of: fleetToken)["cnf"] as? [String: Any])?["x5t#S256"] as? String == (try ClientCertificateThumbprint.of(setup.fleet.certificate)))

            // The gateway trusts the robot's certificate, and a twin (same subject, another key),
            // so that both get through its handshake and only the binding tells them apart.
            let twin = try TestCertificateAuthority.selfSigned(subject: "/CN=robot-1")
            let bundle = setup.directory + "/gateway-clients.pem"
            let pems = try [setup.clientCA.certificate, setup.robot.certificate, twin.certificate].map { try String(contentsOfFile: $0, encoding: .utf8) }
            try pems.joined(separator: "\n").write(toFile: bundle, atomically: true, encoding: .utf8)
            let upstream = try await TestUpstream.start()
            let gateway = try await BoundTokenGateway.start(serverCA: setup.serverCA, clientCA: bundle, issuer: setup.issuer, redisURL: setup.redis.url,
                                                           secret: setup.secret, upstream: upstream)
            func call(_ certificate: TestCertificateAuthority.Leaf?) throws -> String {
                var arguments = ["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", setup.serverCA.certificate,
                                 "-H", "Authorization: Bearer \(token)"]
                if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
                return try runCommand("/usr/bin/curl", arguments + ["https://localhost:\(gateway.port)/orders"]).stdout
            }
            let robotPassed = try await Poll.until(timeout: .seconds(10)) { try call(setup.robot) == "200" }
            #expect(robotPassed, "\((try? call(setup.robot)) ?? "-") \(gateway.process.output)")
            #expect(try call(twin) == "401")
            #expect(try call(setup.partner) == "401")
            #expect(try call(nil) == "401")
            await gateway.stop()
            await upstream.stop()
        }
    }

    @Test("a self-signed certificate with the registered subject but another key is refused invalid_client")
    func otherKeyRefused() async throws {
        try await withControl { setup in
            let twin = try TestCertificateAuthority.selfSigned(subject: "/CN=robot-1")
            let refused = try setup.token("robot", certificate: twin)
            #expect(Self.isInvalidClient(refused), "\(refused)")
            #expect(Self.isInvalidClient(try setup.token("fleet", certificate: twin)))
            // A certificate registered for another client does not authenticate this one.
            #expect(Self.isInvalidClient(try setup.token("fleet", certificate: setup.robot)))
            #expect(try setup.token("robot", certificate: setup.robot).status == 200)
        }
    }

    @Test("a tls_client_auth client cannot authenticate with a self-signed certificate that copies its subject DN")
    func copiedSubjectRefused() async throws {
        try await withControl { setup in
            // mimic's certificate says CN=partner-1 and gets through the handshake (it is registered),
            // but no CA signed it: it is no tls_client_auth credential.
            #expect(try setup.token("mimic", certificate: setup.mimic).status == 200)
            let impersonation = try setup.token("partner", certificate: setup.mimic)
            #expect(Self.isInvalidClient(impersonation), "\(impersonation)")
            // Nor is an unregistered self-signed copy.
            let copy = try TestCertificateAuthority.selfSigned(subject: "/CN=partner-1")
            #expect(Self.isInvalidClient(try setup.token("partner", certificate: copy)))
            // The CA-signed certificate still authenticates partner, through the same verifier.
            let issued = try setup.token("partner", certificate: setup.partner)
            #expect(issued.status == 200, "\(issued)")
        }
    }

    @Test("a self-signed client presenting no certificate is refused invalid_client")
    func noCertificateRefused() async throws {
        try await withControl { setup in
            let refused = try setup.token("robot", certificate: nil)
            #expect(Self.isInvalidClient(refused), "\(refused)")
            #expect(refused.body.contains("none was presented"), "\(refused.body)")
        }
    }

    @Test("with client_certificates: required only CA-signed and registered self-signed certificates get through the handshake")
    func requiredListener() async throws {
        try await withControl(clientCertificates: "required") { setup in
            #expect(try setup.token("robot", certificate: setup.robot).status == 200)
            #expect(try setup.token("partner", certificate: setup.partner).status == 200)
            let stranger = try TestCertificateAuthority.selfSigned(subject: "/CN=robot-1")
            #expect(try setup.token("robot", certificate: stranger).status == 0)
            #expect(try setup.token("robot", certificate: nil).status == 0)
        }
    }
}
