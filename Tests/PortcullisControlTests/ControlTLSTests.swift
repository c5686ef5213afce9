import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// A real control plane serving HTTPS on both listeners, its admin API taking client certificates,
/// spoken to with curl (a real TLS client independent of the code under test).
@Suite("control plane over TLS and mutual TLS", .serialized)
struct ControlTLSTests {
    struct Setup {
        let redis: RedisServerFixture
        let directory: String
        let authority: TestCertificateAuthority
        let adminClients: TestCertificateAuthority
        let port: Int
        let adminPort: Int
        let process: ManagedProcess
    }

    /// `curl` over HTTPS; returns the HTTP status (0 when no response came) and the body.
    static func curl(_ url: String, ca: String, certificate: TestCertificateAuthority.Leaf? = nil, token: String? = nil,
                     method: String = "GET", json: String? = nil) throws -> (status: Int, body: String) {
        var arguments = ["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--cacert", ca, "-X", method]
        if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let json { arguments += ["-H", "Content-Type: application/json", "--data", json] }
        let result = try runCommand("/usr/bin/curl", arguments + [url])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func withControl(adminAuth: String, clientCertificates: String, _ body: (Setup) async throws -> Void) async throws {
        let redis = try await RedisServerFixture.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ctl-tls")
        let authority = try TestCertificateAuthority.make(name: "Control CA")
        let adminClients = try TestCertificateAuthority.make(name: "Admin Clients CA")
        let server = try authority.issue("control")
        try FileManager.default.copyItem(atPath: server.certificate, toPath: directory + "/control.pem")
        try FileManager.default.copyItem(atPath: server.privateKey, toPath: directory + "/control.key")
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let file = directory + "/control.yaml"
        try """
        node_id: control-tls
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        cluster:
          redis: \(redis.url)
          secret: \(Base64URL.encode([UInt8](repeating: 7, count: 32)))
        tls: {certificate_chain: control.pem, private_key: control.key}
        admin_tls:
          certificate_chain: control.pem
          private_key: control.key
          client_ca: \(adminClients.certificate)
          client_certificates: \(clientCertificates)
        admin_auth: \(adminAuth)
        admin_tokens:
          - {name: ops-token, sha256: \(sha256Hex(ControlCluster.adminToken))}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(executable: PortcullisBinary.path, arguments: ["control", "--config", file, "--log-level", "info"],
                                         logFile: directory + "/control.log")
        let setup = Setup(redis: redis, directory: directory, authority: authority, adminClients: adminClients,
                          port: port, adminPort: adminPort, process: process)
        try await withCleanup(setup, { setup in
            await setup.process.terminate(timeout: .seconds(10))
            await setup.redis.shutdown()
        }) { setup in
            let ready = try await Poll.until(timeout: .seconds(20)) {
                try Self.curl("https://127.0.0.1:\(port)/healthz", ca: authority.certificate).status == 200
            }
            guard ready else { throw FixtureError("control plane did not serve HTTPS:\n\(process.output)") }
            try await body(setup)
        }
    }

    @Test("both listeners serve HTTPS only; a client certificate from the admin CA is an admin credential and the audit actor")
    func httpsAndClientCertificates() async throws {
        try await withControl(adminAuth: "token_or_certificate", clientCertificates: "optional") { setup in
            let admin = "https://127.0.0.1:\(setup.adminPort)"
            // Plain HTTP gets no HTTP answer from a TLS port.
            let plain = try runCommand("/usr/bin/curl", ["-s", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}",
                                                         "http://127.0.0.1:\(setup.adminPort)/healthz"])
            #expect(plain.stdout == "000")

            let alice = try setup.adminClients.issue("ops-alice")
            let revoked = try Self.curl(admin + "/v1/revocations", ca: setup.authority.certificate, certificate: alice,
                                        method: "POST", json: #"{"kind":"subject","value":"mallory"}"#)
            #expect((200...202).contains(revoked.status), "\(revoked)")
            let audit = try Self.curl(admin + "/v1/audit", ca: setup.authority.certificate, token: ControlCluster.adminToken)
            #expect(audit.status == 200)
            #expect(audit.body.contains("CN=ops-alice"), "\(audit.body)")

            // Neither a token nor a certificate: refused. A token alone: admitted.
            #expect(try Self.curl(admin + "/v1/nodes", ca: setup.authority.certificate).status == 401)
            #expect(try Self.curl(admin + "/v1/nodes", ca: setup.authority.certificate, token: ControlCluster.adminToken).status == 200)

            // A certificate some other CA signed does not get through the handshake.
            let stranger = try TestCertificateAuthority.make(name: "Stranger CA").issue("mallory")
            #expect(try Self.curl(admin + "/v1/nodes", ca: setup.authority.certificate, certificate: stranger, token: ControlCluster.adminToken).status == 0)
        }
    }

    /// A browser that holds an admin client certificate presents it to any page's requests: on
    /// the build before, a plain form POST or a `fetch` without a Content-Type from an attacker's
    /// page made admin changes with it — rotating and retiring the signing key, revoking a
    /// subject (an attacker review).
    @Test("under admin_auth: certificate, a change a web page asks for with the operator's certificate (Origin or Sec-Fetch-Site: cross-site or same-site; a form or no Content-Type) is refused 403, changes nothing and is audited; the same call from an API client is made")
    func crossSiteChangesAreRefused() async throws {
        try await withControl(adminAuth: "certificate", clientCertificates: "optional") { setup in
            let admin = "https://127.0.0.1:\(setup.adminPort)"
            let alice = try setup.adminClients.issue("ops-alice")
            func post(_ value: String, _ headers: [String]) throws -> Int {
                var arguments = ["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", setup.authority.certificate,
                                 "--cert", alice.certificate, "--key", alice.privateKey, "-X", "POST"]
                for header in headers { arguments += ["-H", header] }
                arguments += ["--data", #"{"kind":"subject","value":"\#(value)"}"#, admin + "/v1/revocations"]
                return Int(try runCommand("/usr/bin/curl", arguments).stdout) ?? 0
            }
            // What browsers send for a no-cors fetch of a Blob body, and for a form.
            #expect(try post("victim-a", ["Content-Type:", "Origin: https://attacker.test", "Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors"]) == 403)
            #expect(try post("victim-b", ["Content-Type: application/x-www-form-urlencoded", "Origin: null", "Sec-Fetch-Site: cross-site"]) == 403)
            #expect(try post("victim-c", ["Content-Type:", "Sec-Fetch-Site: same-site"]) == 403)
            #expect(try post("victim-d", ["Content-Type: application/json", "Origin: https://127.0.0.1:\(setup.adminPort)"]) == 403)
            // An API client sends neither field; one a person typed says `none`.
            #expect((200...202).contains(try post("api-client", ["Content-Type: application/json"])))
            #expect((200...202).contains(try post("typed", ["Content-Type: application/json", "Sec-Fetch-Site: none"])))
            let listed = try Self.curl(admin + "/v1/revocations?limit=100", ca: setup.authority.certificate, certificate: alice)
            #expect(listed.body.contains("api-client") && listed.body.contains("typed"), "\(listed.body)")
            #expect(!listed.body.contains("victim-"), "\(listed.body)")
            let audit = try Self.curl(admin + "/v1/audit?count=20", ca: setup.authority.certificate, certificate: alice)
            #expect(audit.body.components(separatedBy: "cross_site_request").count - 1 == 4, "\(audit.body)")
        }
    }

    @Test("admin_auth: certificate refuses a bearer token alone; client_certificates: required refuses the handshake without one")
    func certificateOnly() async throws {
        try await withControl(adminAuth: "certificate", clientCertificates: "required") { setup in
            let admin = "https://127.0.0.1:\(setup.adminPort)"
            #expect(try Self.curl(admin + "/v1/nodes", ca: setup.authority.certificate, token: ControlCluster.adminToken).status == 0)
            let bob = try setup.adminClients.issue("ops-bob")
            #expect(try Self.curl(admin + "/v1/nodes", ca: setup.authority.certificate, certificate: bob).status == 200)
        }
    }

    /// The build before had no way to trust a private CA or present a certificate: against the
    /// shipped example's admin TLS it could not be used at all (an attacker review).
    @Test("portcullis admin trusts the admin listener's private CA with --ca-file and signs in with --cert/--key where certificates are the credential; without the CA it refuses the server")
    func cliOverTLS() async throws {
        try await withControl(adminAuth: "certificate", clientCertificates: "required") { setup in
            let admin = "https://127.0.0.1:\(setup.adminPort)"
            let carol = try setup.adminClients.issue("ops-carol")
            let environment = ["PATH": "/usr/bin:/bin", "HOME": setup.directory]
            let ok = try runCommand(PortcullisBinary.path, ["admin", "status", "--json", "--endpoint", admin, "--ca-file", setup.authority.certificate,
                                                            "--cert", carol.certificate, "--key", carol.privateKey], environment: environment)
            #expect(ok.status == 0, "\(ok.stderr)")
            #expect(ok.stdout.contains("\"revocations\""), "\(ok.stdout)")
            // The server's certificate is not in the system's trust store: refused, no token sent.
            let untrusted = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", admin, "--cert", carol.certificate, "--key", carol.privateKey],
                                           environment: environment)
            #expect(untrusted.status == 1 && untrusted.stderr.contains("cannot reach the admin API"), "\(untrusted.stderr)")
            // Bad input: a missing CA file or a certificate without its key is a usage error (2).
            let missing = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", admin, "--ca-file", setup.directory + "/nope.pem",
                                                                 "--token", "x"], environment: environment)
            #expect(missing.status == 2 && missing.stderr.contains("no such file"), "\(missing.stderr)")
            let halfPair = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", admin, "--cert", carol.certificate],
                                          environment: environment)
            #expect(halfPair.status == 2 && halfPair.stderr.contains("--cert and --key go together"), "\(halfPair.stderr)")
        }
    }

    /// The console in a browser, by curl: a cookie jar, the client certificate when given; the
    /// status, `Location` and body of the answer.
    static func console(_ setup: Setup, _ path: String, jar: String, certificate: TestCertificateAuthority.Leaf?,
                        form: [String: String]? = nil) throws -> (status: Int, location: String?, body: String) {
        var arguments = ["-sS", "--max-time", "5", "-i", "--cacert", setup.authority.certificate, "-c", jar, "-b", jar]
        if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
        if let form {
            arguments += ["-X", "POST", "-H", "Content-Type: application/x-www-form-urlencoded",
                          "--data", form.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")]
        }
        let text = try runCommand("/usr/bin/curl", arguments + ["https://127.0.0.1:\(setup.adminPort)\(path)"]).stdout
        let head = text.components(separatedBy: "\r\n\r\n").first ?? ""
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        let location = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") }
            .map { $0.dropFirst("location:".count).trimmingCharacters(in: .whitespaces) }
        return (status, location, text)
    }

    /// The build before kept a console session as long as the mode still took certificates at
    /// all: a session signed in with a certificate opened the console from a connection without
    /// one, and a reload to token_and_certificate left it open on the certificate alone (an
    /// attacker review).
    @Test("a console session signed in with a client certificate opens pages only over a connection presenting that certificate, and a reload to a stricter admin_auth (token_and_certificate) ends it")
    func consoleSessionFollowsItsCertificateAndTheMode() async throws {
        try await withControl(adminAuth: "token_or_certificate", clientCertificates: "optional") { setup in
            let operatorCertificate = try setup.adminClients.issue("operator-1")
            let other = try setup.adminClients.issue("operator-2")
            let jar = setup.directory + "/cookies.txt"
            let signInPage = try Self.console(setup, "/console/sign-in", jar: jar, certificate: operatorCertificate)
            #expect(signInPage.status == 200, "\(signInPage.body)")
            let csrf = try #require(signInPage.body.components(separatedBy: #"name="csrf_token" value=""#).dropFirst().first?
                .components(separatedBy: "\"").first)
            let signedIn = try Self.console(setup, "/console/sign-in", jar: jar, certificate: operatorCertificate, form: ["csrf_token": csrf, "token": ""])
            #expect(signedIn.status == 303 && signedIn.location == "/console/cluster", "\(signedIn.body.prefix(600))")
            #expect(try Self.console(setup, "/console/cluster", jar: jar, certificate: operatorCertificate).status == 200)
            let bare = try Self.console(setup, "/console/cluster", jar: jar, certificate: nil)
            #expect(bare.status == 303 && bare.location == "/console/sign-in", "without the certificate: \(bare.status)")
            let another = try Self.console(setup, "/console/cluster", jar: jar, certificate: other)
            #expect(another.status == 303 && another.location == "/console/sign-in", "with another operator's certificate: \(another.status)")
            #expect(try Self.console(setup, "/console/cluster", jar: jar, certificate: operatorCertificate).status == 200)
            // A token sign-in from a browser that also sent its certificate: the token alone is
            // admitted, so the session does not need the certificate again.
            let tokenJar = setup.directory + "/token-cookies.txt"
            let tokenPage = try Self.console(setup, "/console/sign-in", jar: tokenJar, certificate: operatorCertificate)
            let tokenCSRF = try #require(tokenPage.body.components(separatedBy: #"name="csrf_token" value=""#).dropFirst().first?
                .components(separatedBy: "\"").first)
            let tokenSignIn = try Self.console(setup, "/console/sign-in", jar: tokenJar, certificate: operatorCertificate,
                                               form: ["csrf_token": tokenCSRF, "token": ControlCluster.adminToken])
            #expect(tokenSignIn.status == 303, "\(tokenSignIn.body.prefix(600))")
            #expect(try Self.console(setup, "/console/cluster", jar: tokenJar, certificate: nil).status == 200)
            let file = setup.directory + "/control.yaml"
            try (try String(contentsOfFile: file, encoding: .utf8))
                .replacingOccurrences(of: "admin_auth: token_or_certificate", with: "admin_auth: token_and_certificate")
                .write(toFile: file, atomically: true, encoding: .utf8)
            setup.process.signal(SIGHUP)
            try await eventually("the stricter mode ends the certificate-only session") {
                try Self.console(setup, "/console/cluster", jar: jar, certificate: operatorCertificate).location == "/console/sign-in"
            }
            // The token session now needs its certificate as well.
            #expect(try Self.console(setup, "/console/cluster", jar: tokenJar, certificate: nil).location == "/console/sign-in")
            #expect(try Self.console(setup, "/console/cluster", jar: tokenJar, certificate: operatorCertificate).status == 200)
        }
    }

    /// The build before kept a connection verified under the replaced `client_ca` admitted until
    /// its client closed it: a holder of a certificate the operator meant to cut off by replacing
    /// the CA went on calling the admin API over the connection it kept alive.
    @Test("a reload that replaces admin_tls.client_ca closes the connections open under the old one (a kept-alive connection presenting a certificate of the old CA gets no further answer, requests pipelined across the reload are refused 401 from the reload on, and a new connection is refused), while a reload that changes no client trust leaves them open")
    func clientCAReloadClosesOpenConnections() async throws {
        try await withControl(adminAuth: "certificate", clientCertificates: "required") { setup in
            let old = try setup.adminClients.issue("ops-old")
            let replacement = try TestCertificateAuthority.make(name: "Replacement Admin Clients CA")
            let script = """
            import http.client, os, shutil, signal, socket, ssl, sys, time
            port, ca, cert, key, client_ca, new_ca, pid = sys.argv[1:8]
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(cert, key)
            connection = http.client.HTTPSConnection("127.0.0.1", int(port), context=context, timeout=5)
            def get():
                try:
                    connection.request("GET", "/v1/revocations")
                    response = connection.getresponse()
                    response.read()
                    return str(response.status)
                except Exception as error:
                    return "closed:" + type(error).__name__
            print("first", get(), flush=True)
            os.kill(int(pid), signal.SIGHUP)
            time.sleep(2)
            print("same-trust", get(), flush=True)
            # A second connection keeps 500 requests pipelined across the reload, so that it is
            # never idle: quiescing alone cannot close it.
            pipelined = context.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=5), server_hostname="127.0.0.1")
            pipelined.sendall(b"GET /v1/revocations HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n" * 500)
            replies = pipelined.makefile("rb")
            statuses = []
            def reply():
                line = replies.readline()
                if not line:
                    return False
                statuses.append(int(line.split()[1]))
                length = 0
                while True:
                    header = replies.readline()
                    if header in (b"\\r\\n", b""):
                        break
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                replies.read(length)
                return True
            reply()  # the server is at work on the pipeline when the reload comes
            shutil.copyfile(new_ca, client_ca)
            os.kill(int(pid), signal.SIGHUP)
            try:
                while reply():
                    pass
            except Exception:
                pass
            after = statuses[statuses.index(401):] if 401 in statuses else []
            print("pipelined", statuses.count(200), len(after), all(s == 401 for s in after), flush=True)
            time.sleep(2)
            print("new-trust", get(), flush=True)
            """
            let run = try runCommand("/usr/bin/env", ["python3", "-c", script, String(setup.adminPort), setup.authority.certificate,
                                                      old.certificate, old.privateKey, setup.adminClients.certificate,
                                                      replacement.certificate, String(setup.process.pid)])
            let lines = run.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "first 200", "\(run.stdout)\(run.stderr)")
            #expect(lines.contains("same-trust 200"), "a reload that changed no client trust closed the connection: \(run.stdout)")
            #expect(lines.last?.hasPrefix("new-trust closed:") == true, "the connection of the replaced CA's certificate was still answered: \(run.stdout)")
            // Answered 200 until the reload, 401 from then on, then closed.
            let pipelined = lines.first { $0.hasPrefix("pipelined ") }?.split(separator: " ") ?? []
            #expect(pipelined.count == 4 && (Int(pipelined[1]) ?? 500) < 500 && (Int(pipelined[2]) ?? 0) > 0 && pipelined[3] == "True",
                    "requests pipelined across the reload: \(run.stdout)")
            #expect(setup.process.output.contains("connections_closed_for_client_trust=2"), "\(setup.process.output)")
            let url = "https://127.0.0.1:\(setup.adminPort)/v1/revocations"
            #expect(try Self.curl(url, ca: setup.authority.certificate, certificate: old).status == 0)
            #expect(try Self.curl(url, ca: setup.authority.certificate, certificate: try replacement.issue("ops-new")).status == 200)
        }
    }

    @Test("SIGHUP reloads the certificate for new connections; a broken file keeps the old one")
    func reload() async throws {
        try await withControl(adminAuth: "token", clientCertificates: "none") { setup in
            let health = "https://127.0.0.1:\(setup.port)/healthz"
            let renewed = try TestCertificateAuthority.make(name: "Renewed CA")
            let next = try renewed.issue("control")
            try FileManager.default.removeItem(atPath: setup.directory + "/control.pem")
            try FileManager.default.removeItem(atPath: setup.directory + "/control.key")
            try FileManager.default.copyItem(atPath: next.certificate, toPath: setup.directory + "/control.pem")
            try FileManager.default.copyItem(atPath: next.privateKey, toPath: setup.directory + "/control.key")
            setup.process.signal(SIGHUP)
            #expect(try await Poll.until(timeout: .seconds(10)) { try Self.curl(health, ca: renewed.certificate).status == 200 },
                    "the renewed certificate was not served:\n\(setup.process.output)")
            #expect(try Self.curl(health, ca: setup.authority.certificate).status == 0)

            try "not a certificate".write(toFile: setup.directory + "/control.pem", atomically: true, encoding: .utf8)
            setup.process.signal(SIGHUP)
            #expect(try await Poll.until { setup.process.output.contains("reload failed") && setup.process.output.contains("tls:") })
            #expect(try Self.curl(health, ca: renewed.certificate).status == 200)
            // The SIGHUP listener ends with the rest on SIGTERM.
            let started = ContinuousClock.now
            #expect(await setup.process.terminate(timeout: .seconds(8)) == 0)
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }
}

/// The whole RFC 8705 story with real processes: the built-in authorization server authenticates
/// a client by its certificate (`tls_client_auth`) and binds the token to it; a gateway accepts
/// the token only over a connection with that certificate.
@Suite("certificate-bound tokens from the built-in authorization server", .serialized)
struct BoundTokenTests {
    // The registered subject is written as RFC 4514 renders it, the certificate's last RDN first:
    // `/O=Acme/CN=partner-1` is `CN=partner-1,O=Acme`. The same RDNs listed the other way round are
    // another subject.
    @Test("a tls_client_auth client gets a token bound to its certificate, which a gateway accepts only with that certificate")
    func boundTokenEndToEnd() async throws {
        let redis = try await RedisServerFixture.start()
        let upstream = try await TestUpstream.start()
        let directory = try TemporaryDirectory.make(prefix: "portcullis-mtls")
        let serverCA = try TestCertificateAuthority.make(name: "Server CA")
        let clientCA = try TestCertificateAuthority.make(name: "Client CA")
        let serverLeaf = try serverCA.issue("localhost")
        let partner = try clientCA.issue("partner-1", subject: "/O=Acme/CN=partner-1")
        let impostor = try clientCA.issue("partner-2", subject: "/O=Acme/CN=partner-2")
        let reordered = try clientCA.issue("partner-1", subject: "/CN=partner-1/O=Acme")
        let port = try FreePort.allocate(), adminPort = try FreePort.allocate()
        let secret = Base64URL.encode([UInt8](repeating: 5, count: 32))
        let issuer = "https://localhost:\(port)"
        try """
        node_id: control-mtls
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        cluster: {redis: \(redis.url), secret: \(secret), heartbeat_interval: 300ms}
        tls:
          certificate_chain: \(serverLeaf.certificate)
          private_key: \(serverLeaf.privateKey)
          client_ca: \(clientCA.certificate)
          client_certificates: optional
        admin_tokens:
          - {name: ops, sha256: \(sha256Hex(ControlCluster.adminToken))}
        authorization_server:
          issuer: \(issuer)
          audience: api://demo
          key_encryption_key_file: kek.secret
          clients:
            - {client_id: partner, tls_client_auth_subject_dn: "CN=partner-1,O=Acme", scopes: [orders:read]}
        """.write(toFile: directory + "/control.yaml", atomically: true, encoding: .utf8)
        let control = try ManagedProcess(executable: PortcullisBinary.path, arguments: ["control", "--config", directory + "/control.yaml"],
                                         logFile: directory + "/control.log")
        try await withCleanup(control, { control in
            await control.terminate(timeout: .seconds(10))
            await redis.shutdown()
            await upstream.stop()
        }) { control in
            let jwks = "https://localhost:\(port)/oauth2/jwks"
            let ready = try await Poll.until(timeout: .seconds(20)) {
                try ControlTLSTests.curl(jwks, ca: serverCA.certificate).body.contains("\"kid\"")
            }
            guard ready else { throw FixtureError("the authorization server did not come up:\n\(control.output)") }
            func requestToken(_ certificate: TestCertificateAuthority.Leaf?) throws -> (status: Int, body: String) {
                var arguments = ["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "--cacert", serverCA.certificate,
                                 "--data", "grant_type=client_credentials&client_id=partner"]
                if let certificate { arguments += ["--cert", certificate.certificate, "--key", certificate.privateKey] }
                let result = try runCommand("/usr/bin/curl", arguments + ["https://localhost:\(port)/oauth2/token"])
                let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
                return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
            }
            // The client's identity is its certificate: none, or another one, gets no token.
            #expect(try requestToken(nil).status == 401)
            #expect(try requestToken(impostor).status == 401)
            #expect(try requestToken(reordered).status == 401)
            let issued = try requestToken(partner)
            #expect(issued.status == 200, "\(issued)")
            let token = try #require((try JSONSerialization.jsonObject(with: Data(issued.body.utf8)) as? [String: Any])?["access_token"] as? String)
            let cnf = claims(of: token)["cnf"] as? [String: Any]
            #expect(cnf?["x5t#S256"] as? String == (try ClientCertificateThumbprint.of(partner.certificate)))

            let gateway = try await BoundTokenGateway.start(serverCA: serverCA, clientCA: clientCA.certificate, issuer: issuer, redisURL: redis.url,
                                                           secret: secret, upstream: upstream)
            let api = "https://localhost:\(gateway.port)/orders"
            var withPartner = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", serverCA.certificate,
                               "-H", "Authorization: Bearer \(token)"]
            let withImpostor = withPartner + ["--cert", impostor.certificate, "--key", impostor.privateKey, api]
            let withoutCertificate = withPartner + [api]
            withPartner += ["--cert", partner.certificate, "--key", partner.privateKey, api]
            #expect(try await Poll.until(timeout: .seconds(10)) { try runCommand("/usr/bin/curl", withPartner).stdout == "200" })
            #expect(try runCommand("/usr/bin/curl", withImpostor).stdout == "401")
            #expect(try runCommand("/usr/bin/curl", withoutCertificate).stdout == "401")
            await gateway.stop()
        }
    }
}

/// RFC 8705 `x5t#S256` of a PEM certificate file, computed with the openssl command.
enum ClientCertificateThumbprint {
    static func of(_ pemFile: String) throws -> String {
        let der = try runCommand("/bin/sh", ["-c", "openssl x509 -in '\(pemFile)' -outform DER | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '='"])
        return der.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
