import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Synchronization
import Testing

/// SIGHUP reloads the whole configuration file or nothing (docs/operations.md, "Reloading the
/// configuration"), against real gateway processes.
@Suite("gateway: configuration reload, all or nothing", .serialized)
struct ConfigReloadTests {
    static let secondIssuer = "https://second.test"

    /// A gateway config: issuer `test` (TestIssuer's keys in jwks.json), route `/a` checking it and
    /// stamping `X-Config: <stamp>` on responses, plus whatever `extra` adds (issuers entries go in
    /// `extraIssuers`, routes in `extraRoutes`).
    static func config(port: Int, adminPort: Int, upstream: String, stamp: String = "A", head: String = "",
                       extraIssuers: String = "", extraRoutes: String = "") -> String {
        """
        listen: 127.0.0.1:\(port)
        admin_listen: 127.0.0.1:\(adminPort)
        event_loops: 1
        \(head)
        issuers:
          - name: test
            issuer: \(TestIssuer.issuer)
            audiences: [\(TestIssuer.audience)]
            algorithms: [ES256]
            jwks_file: jwks.json
        \(extraIssuers)
        routes:
          - name: a
            path_prefix: /a
            upstream: {targets: [\(upstream)]}
            auth: {type: jwt}
            response_headers: {set: {X-Config: \(stamp)}}
        \(extraRoutes)
        """
    }

    static func secondIssuerYAML(jwks: String = "jwks.json") -> String {
        """
          - name: second
            issuer: \(secondIssuer)
            audiences: [\(TestIssuer.audience)]
            algorithms: [ES256]
            jwks_file: \(jwks)
        """
    }

    /// Route `/b`, for issuer `second` only.
    static func routeB(_ upstream: String, tls: String = "") -> String {
        """
          - name: b
            path_prefix: /b
            upstream: {targets: [\(upstream)]\(tls)}
            auth: {type: jwt, issuers: [second]}
        """
    }

    static func start(_ issuer: TestIssuer, head: String = "") async throws -> (TestUpstream, GatewayProcess) {
        let upstream = try await TestUpstream.start()
        let gateway = try await GatewayProcess.start(extraFiles: ["jwks.json": issuer.jwks]) { port, admin, _ in
            config(port: port, adminPort: admin, upstream: upstream.address, head: head)
        }
        return (upstream, gateway)
    }

    /// curl waiting on `/a/delay/5000` through `gateway` with `token` (a long poll: watched as a
    /// session once it has run a second); it writes its body to `pollBody(directory)` and
    /// `status N` to its output.
    static func longPoll(_ gateway: GatewayProcess, token: String, directory: String) throws -> ManagedProcess {
        try ManagedProcess(executable: "/usr/bin/env", arguments: [
            "curl", "-sS", "--max-time", "10", "-o", directory + "/poll.body", "-w", "status %{http_code}\n",
            "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(gateway.port)/a/delay/5000",
        ], logFile: directory + "/poll.log")
    }

    /// The body `longPoll` received.
    static func pollBody(_ directory: String) -> String {
        (try? String(contentsOfFile: directory + "/poll.body", encoding: .utf8)) ?? ""
    }

    static func reloads(_ gateway: GatewayProcess, _ result: String) throws -> Double {
        PrometheusText.sample(try gateway.metrics(), "portcullis_config_reloads_total{result=\"\(result)\"}") ?? -1
    }

    @Test("a reload that adds an issuer and a route makes the new issuer's tokens accepted on it")
    func reloadAddsIssuer() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let second = try issuer.token(extra: ["iss": .string(Self.secondIssuer)])
        let first = try issuer.token()
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(first)")]).status == 200)
        let before = try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(second)")])
        #expect(before.status == 401)

        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, extraIssuers: Self.secondIssuerYAML(),
                        extraRoutes: Self.routeB(upstream.address))
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
        #expect(try gateway.request("GET", "/b/x", headers: [("Authorization", "Bearer \(second)")]).status == 200)
        // The old route keeps its issuer; the new issuer is known now, but /a names no issuers, so it takes both.
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(first)")]).status == 200)
        #expect(try gateway.request("GET", "/b/x", headers: [("Authorization", "Bearer \(first)")]).status == 401)
        #expect(gateway.process.output.contains("configuration reloaded"))
    }

    /// An attacker review was let through a route by a token signed with a key the new file
    /// added, under a rule the new file closed to it, for as long as the reload waited on a slow
    /// key server: the new file's keys were in force under the old routes.
    @Test("while a reload waits on a slow key server, the running configuration stays whole: a key the new file adds is not accepted under the old routes; then the new routes and keys go in force together")
    func reloadWaitsBeforeAnythingChanges() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let added = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "es-2")
        let addedToken = try issuer.token(scope: "orders:read", signer: added)
        func status() throws -> Int { try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(addedToken)")]).status }
        #expect(try status() == 401)

        // The new file: the key added to the issuer's set, /a needing a scope the token lacks, and
        // an issuer whose key server answers after 3 s (with no key set).
        let directory = (gateway.configFile as NSString).deletingLastPathComponent
        try JSONWriter.serialize(["keys": .array([issuer.es256.key.publicJWK(keyID: "es-1"), issuer.rs256.key.publicJWK(keyID: "rs-1"),
                                                  added.key.publicJWK(keyID: "es-2")])])
            .write(toFile: directory + "/jwks.json", atomically: true, encoding: .utf8)
        let slowIssuer = """
          - name: slow
            issuer: https://slow.test
            audiences: [\(TestIssuer.audience)]
            algorithms: [ES256]
            jwks_uri: http://\(upstream.address)/delay/3000/jwks.json
        """
        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, extraIssuers: slowIssuer)
            .replacingOccurrences(of: "auth: {type: jwt}", with: "auth: {type: jwt, scopes: {any_of: [orders:admin]}}")
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(1000))
        #expect(try Self.reloads(gateway, "success") < 1, "the reload did not wait on the key server")
        #expect(try status() == 401, "the new key under the old route")
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
        #expect(try status() == 403, "the new key under the new route")
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(try issuer.token(scope: "orders:admin", signer: added))")]).status == 200)
    }

    /// An attacker review kept WebSockets open after a reload that changed their issuer's `iss`
    /// or audiences, while new requests with the same tokens were refused.
    @Test("a reload that changes an issuer's audiences so that a token no longer passes ends the long request it is holding open, with 401 token revoked, counted as token_revoked")
    func reloadChangingAudiencesEndsSessions() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let directory = (gateway.configFile as NSString).deletingLastPathComponent
        let token = try issuer.token()
        let poll = try Self.longPoll(gateway, token: token, directory: directory)
        try await withCleanup(poll, { await $0.kill() }) { poll in
            try await Task.sleep(for: .milliseconds(1500))
            try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address)
                .replacingOccurrences(of: "audiences: [\(TestIssuer.audience)]", with: "audiences: [api://another]")
                .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
            let reloadedAt = Date()
            gateway.process.signal(SIGHUP)
            #expect(await poll.waitForExit(timeout: .seconds(6)) == 0)
            #expect(Date().timeIntervalSince(reloadedAt) < 2.0, "answered by the upstream, not ended by the reload")
            #expect(poll.output.contains("status 401"), "\(poll.output)")
            let body = Self.pollBody(directory)
            #expect(body.contains("token revoked"), "\(body)")
        }
        #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="token_revoked"}"#) == 1)
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(token)")]).status == 401)
    }

    /// A bypass review's long poll, admitted just before such a reload and watched only from its
    /// first second (after the reload's sweep), was answered by the upstream.
    @Test("a long request admitted just before a reload that changes its issuer's audiences is ended with 401 token revoked once it is watched, not answered by the upstream")
    func reloadReachesRequestsWatchedAfterIt() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let directory = (gateway.configFile as NSString).deletingLastPathComponent
        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address)
            .replacingOccurrences(of: "audiences: [\(TestIssuer.audience)]", with: "audiences: [api://another]")
            .write(toFile: directory + "/next.yaml", atomically: true, encoding: .utf8)
        let poll = try Self.longPoll(gateway, token: try issuer.token(), directory: directory)
        let started = Date()
        try await withCleanup(poll, { await $0.kill() }) { poll in
            try await Task.sleep(for: .milliseconds(200))
            try FileManager.default.removeItem(atPath: gateway.configFile)
            try FileManager.default.moveItem(atPath: directory + "/next.yaml", toPath: gateway.configFile)
            gateway.process.signal(SIGHUP)
            try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
            #expect(await poll.waitForExit(timeout: .seconds(8)) == 0)
            #expect(Date().timeIntervalSince(started) < 3.0, "answered by the upstream, not ended once watched")
            #expect(poll.output.contains("status 401"), "\(poll.output)")
            let body = Self.pollBody(directory)
            #expect(body.contains("token revoked"), "refused at admission, not ended once watched: \(body)")
        }
        #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="token_revoked"}"#) == 1)
    }

    /// The build before left the set loaded from the file in the store, where nothing refreshed
    /// or expired it: the issuer's tokens kept verifying after the operator took its keys away
    /// (an attacker review).
    @Test("a reload that takes an issuer's key source away leaves none of its keys: its tokens are refused and the node is not ready")
    func reloadRemovesKeySource() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let token = try issuer.token()
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(token)")]).status == 200)
        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address)
            .replacingOccurrences(of: "    jwks_file: jwks.json\n", with: "")
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
        let refused = try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(token)")])
        #expect(refused.status == 401, "\(refused.status) \(refused.text)")
        #expect(try gateway.readiness().status == 503)
    }

    @Test("a reload that removes an issuer whose keys never loaded makes the node ready again")
    func reloadRemovesUnreadyIssuer() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        // Its key set URL answers 404: its keys never load, so the node is not ready.
        let remote = """
              - name: remote
                issuer: https://remote.test
                audiences: [\(TestIssuer.audience)]
                algorithms: [ES256]
                jwks_uri: http://127.0.0.1:\(gateway.adminPort)/no-such-jwks
            """
        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, extraIssuers: remote)
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
        #expect(try gateway.readiness().status == 503)

        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address)
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 2 }
        #expect(try gateway.readiness().status == 200)
    }

    @Test("a bad reload changes nothing, names file, line and key, and is counted",
          arguments: [
            ("syntax", "gateway.yaml:"),
            ("missing jwks_file", "issuers[1].jwks_file"),
            ("start-only key", "http2"),
            ("unreadable upstream CA", "missing-ca.pem"),
          ])
    func badReload(_ kind: String, _ named: String) async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let token = try issuer.token()
        let second = try issuer.token(extra: ["iss": .string(Self.secondIssuer)])
        // Each bad file also adds issuer `second` and route /b and restamps /a: none of it may appear.
        let secondIssuer = Self.secondIssuerYAML(jwks: kind == "missing jwks_file" ? "missing.json" : "jwks.json")
        let routeB = Self.routeB(upstream.address, tls: kind == "unreadable upstream CA" ? ", tls: {ca_file: missing-ca.pem}" : "")
        var text = Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, stamp: "B",
                               head: kind == "start-only key" ? "http2: {enabled: false}" : "", extraIssuers: secondIssuer, extraRoutes: routeB)
        if kind == "syntax" { text += "\n  - {name: broken" }
        try text.write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "failure")) == 1 }
        #expect(try Self.reloads(gateway, "success") == 0)
        let old = try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(token)")])
        #expect(old.status == 200)
        #expect(old.header("X-Config") == "A")
        #expect(try gateway.request("GET", "/b/x", headers: [("Authorization", "Bearer \(second)")]).status == 404)
        #expect(try gateway.request("GET", "/a/x", headers: [("Authorization", "Bearer \(second)")]).status == 401)
        let log = gateway.process.output
        #expect(log.contains("reload failed"), "\(log)")
        #expect(log.contains(named), "\(kind): \(log)")
        if kind == "syntax" || kind == "start-only key" {
            #expect(log.range(of: #"gateway\.yaml:\d+"#, options: .regularExpression) != nil, "file:line: \(log)")
        }
        #expect(!log.contains("configuration reloaded"))
    }

    @Test("reloads under load between two valid configurations fail no request on keep-alive connections")
    func reloadUnderLoad() async throws {
        let issuer = try TestIssuer()
        let (upstream, gateway) = try await Self.start(issuer)
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let token = try issuer.token()
        let configs = ["A", "B"].map {
            Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, stamp: $0)
        }
        // Blocking clients on threads of their own (the cooperative pool has as many threads as cores).
        let load = KeepAliveLoad()
        for _ in 0..<4 { load.run(gateway: gateway, headers: [("Authorization", "Bearer \(token)")]) }
        let deadline = ContinuousClock.now + .seconds(3)
        var sent = 0
        while ContinuousClock.now < deadline {
            sent += 1
            try configs[sent % 2].write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
            gateway.process.signal(SIGHUP)
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(300))
        let (answers, failures) = await load.stop()
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect((answers["A"] ?? 0) > 0 && (answers["B"] ?? 0) > 0, "both configurations answered: \(answers)")
        #expect(try Self.reloads(gateway, "failure") == 0)
        #expect(try Self.reloads(gateway, "success") >= 10, "\(sent) SIGHUPs: \(gateway.process.output.suffix(3000))")
    }

    @Test("a reload replaces the listener certificate; one that cannot be read changes nothing")
    func reloadCertificate() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-reload-tls")
        for name in ["one", "two"] {
            let result = try runCommand("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                                             "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).pem",
                                                             "-subj", "/CN=\(name)", "-addext", "subjectAltName=DNS:localhost", "-days", "1"])
            #expect(result.status == 0)
        }
        let issuer = try TestIssuer()
        func tls(_ name: String) -> String { "tls: {certificate_chain: \(directory)/\(name).pem, private_key: \(directory)/\(name).key}" }
        let (upstream, gateway) = try await Self.start(issuer, head: tls("one"))
        defer { Task { await gateway.stop(); await upstream.stop() } }
        let token = try issuer.token()
        func served(by name: String) throws -> Bool {
            let curl = try runCommand("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "\(directory)/\(name).pem",
                                                        "--resolve", "localhost:\(gateway.port):127.0.0.1", "-H", "Authorization: Bearer \(token)",
                                                        "https://localhost:\(gateway.port)/a/x"])
            return curl.status == 0 && curl.stdout == "200"
        }
        #expect(try served(by: "one"))
        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, head: tls("two"))
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "success")) == 1 }
        #expect(try served(by: "two"))
        #expect(!(try served(by: "one")))

        try Self.config(port: gateway.port, adminPort: gateway.adminPort, upstream: upstream.address, head: tls("missing"),
                        extraIssuers: Self.secondIssuerYAML(), extraRoutes: Self.routeB(upstream.address))
            .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
        gateway.process.signal(SIGHUP)
        try await waitUntil { (try? Self.reloads(gateway, "failure")) == 1 }
        #expect(try served(by: "two"))
        #expect(gateway.process.output.contains("missing.pem"))
    }
}

/// Keep-alive clients sending `GET /a/x` in a loop, each on a thread of its own, recording the
/// `X-Config` stamp of every 200 and anything else as a failure.
private final class KeepAliveLoad: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)
    private let answers = Mutex<[String: Int]>([:])
    private let failures = Mutex<[String]>([])

    func run(gateway: GatewayProcess, headers: [(String, String)]) {
        running.wrappingAdd(1, ordering: .relaxed)
        Thread.detachNewThread {
            defer { self.running.wrappingSubtract(1, ordering: .relaxed) }
            do {
                let client = try gateway.client()
                defer { client.close() }
                while !self.stopping.load(ordering: .relaxed) {
                    let response = try client.request("GET", "/a/x", headers: headers)
                    let stamp = response.header("X-Config") ?? "none"
                    if response.status == 200, stamp == "A" || stamp == "B" {
                        self.answers.withLock { $0[stamp, default: 0] += 1 }
                    } else {
                        self.failures.withLock { $0.append("\(response.status) \(stamp) \(response.text)") }
                    }
                }
            } catch {
                self.failures.withLock { $0.append("\(error)") }
            }
        }
    }

    /// Stops the clients and returns what they saw.
    func stop() async -> (answers: [String: Int], failures: [String]) {
        stopping.store(true, ordering: .relaxed)
        while running.load(ordering: .relaxed) > 0 { try? await Task.sleep(for: .milliseconds(10)) }
        return (answers.withLock { $0 }, failures.withLock { $0 })
    }
}
