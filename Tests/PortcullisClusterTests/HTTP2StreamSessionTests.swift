import Crypto
import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// Plain HTTP/2 streams (not gRPC) through a real gateway process ending with their tokens: curl
/// as the HTTP/2 client, the test upstream's never-ending `/drip` response, revocations written to
/// a real Redis the way the control plane writes them.
@Suite("HTTP/2 streams ending with their tokens", .serialized)
struct HTTP2StreamSessionTests {
    /// A curl that holds one HTTP/2 stream open, writing what it receives to `body` and, when the
    /// stream ends, its exit code and HTTP status to its log.
    private func hold(port: Int, path: String, token: String, directory: String, name: String, http2: Bool = true) throws -> (ManagedProcess, body: String) {
        let body = directory + "/\(name).body"
        let curl = try ManagedProcess(executable: "/usr/bin/env", arguments: [
            "curl", "-sS", "-N", http2 ? "--http2-prior-knowledge" : "--http1.1", "--max-time", "15", "-o", body, "-w", "status %{http_code}\n",
            "-D", directory + "/\(name).head", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)\(path)",
        ], logFile: directory + "/\(name).log")
        return (curl, body)
    }

    /// Two subjects' never-ending responses through `gateway`; `mallory` is revoked once both
    /// stream. Returns how mallory's curl exited and how long after the revocation, and expects
    /// alice's to go on; `streaming` runs while both stream, before the revocation.
    private func revokeOneOfTwo(_ cluster: TestCluster, gateway: GatewayProcess, directory: String, http2: Bool,
                                streaming: () throws -> Void = {}) async throws -> (exit: Int32?, took: TimeInterval) {
        let (revoked, revokedBody) = try hold(port: gateway.port, path: "/drip/50", token: try cluster.token(sub: "mallory"),
                                              directory: directory, name: "revoked", http2: http2)
        let (kept, keptBody) = try hold(port: gateway.port, path: "/drip/50", token: try cluster.token(sub: "alice"),
                                        directory: directory, name: "kept", http2: http2)
        var outcome: (exit: Int32?, took: TimeInterval) = (nil, .infinity)
        try await withCleanup([revoked, kept], { for process in $0 { await process.kill() } }) { _ in
            #expect(try await Poll.until(timeout: .seconds(10)) { ticks(in: revokedBody) >= 3 && ticks(in: keptBody) >= 3 },
                    "streams did not start: \(revoked.output) \(kept.output)")
            try streaming()
            let revokedAt = Date()
            _ = try await cluster.revoke(.subject, "mallory", until: Int64(revokedAt.timeIntervalSince1970) + 1)
            let exit = await revoked.waitForExit(timeout: .seconds(5))
            let took = Date().timeIntervalSince(revokedAt)
            let before = ticks(in: keptBody)
            try await Task.sleep(for: .milliseconds(300))
            #expect(kept.isRunning && ticks(in: keptBody) > before, "the other subject's stream stopped: \(kept.output)")
            outcome = (exit, took)
        }
        return outcome
    }

    private func ticks(in file: String) -> Int {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    @Test("revoking a subject resets its streaming HTTP/2 response (RST_STREAM) within a second; another subject's stream keeps streaming")
    func revocationResetsTheStream() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-h2-sessions")
        try await withCluster { cluster in
            let gateway = try await cluster.startGateway(id: "gw-h2")
            let (exit, took) = try await revokeOneOfTwo(cluster, gateway: gateway, directory: directory, http2: true)
            // curl: 92 is "HTTP/2 stream was not closed cleanly" — the stream was reset.
            #expect(exit == 92, "curl exit \(String(describing: exit))")
            #expect(took < 1.0, "the stream ended \(took) s after the revocation")
            let closed = try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="h2",reason="token_revoked"}"#)
            #expect(closed == 1)
        }
    }

    @Test("a token revoked while its HTTP/2 request waits for the upstream's head is answered 401 invalid_token 'token revoked'")
    func revocationBeforeTheHeadIsA401() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-h2-sessions-head")
        try await withCluster { cluster in
            let gateway = try await cluster.startGateway(id: "gw-h2-head")
            let (waiting, body) = try hold(port: gateway.port, path: "/delay/4000", token: try cluster.token(sub: "mallory"),
                                           directory: directory, name: "waiting")
            try await withCleanup(waiting, { await $0.kill() }) { waiting in
                try await Task.sleep(for: .milliseconds(500))
                let revokedAt = Date()
                _ = try await cluster.revoke(.subject, "mallory", until: Int64(revokedAt.timeIntervalSince1970) + 1)
                #expect(await waiting.waitForExit(timeout: .seconds(5)) == 0, "\(waiting.output)")
                #expect(Date().timeIntervalSince(revokedAt) < 1.0)
                #expect(waiting.output.contains("status 401"), "\(waiting.output)")
                let answer = (try? String(contentsOfFile: body, encoding: .utf8)) ?? ""
                #expect(answer.contains("invalid_token") && answer.contains("token revoked"), "\(answer)")
                let head = (try? String(contentsOfFile: directory + "/waiting.head", encoding: .utf8)) ?? ""
                #expect(head.lowercased().contains("www-authenticate: bearer") && head.contains("error=\"invalid_token\""), "\(head)")
            }
        }
    }

    /// The build before watched an HTTP/1.1 request only from its response's first flush: a long
    /// poll whose token was revoked while it waited was answered by the upstream afterwards.
    @Test("over HTTP/1.1, a token revoked while its request waits for the upstream's head (a long poll) is answered 401 invalid_token 'token revoked' once the request has waited a second, not by the upstream")
    func http1RevocationBeforeTheHeadIsA401() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-h1-sessions-head")
        try await withCluster { cluster in
            let gateway = try await cluster.startGateway(id: "gw-h1-head")
            let startedAt = Date()
            let (waiting, body) = try hold(port: gateway.port, path: "/delay/5000", token: try cluster.token(sub: "mallory"),
                                           directory: directory, name: "waiting", http2: false)
            try await withCleanup(waiting, { await $0.kill() }) { waiting in
                // Revoked before the request is watched: the watch, when it begins, ends it at once.
                try await Task.sleep(for: .milliseconds(300))
                _ = try await cluster.revoke(.subject, "mallory", until: Int64(Date().timeIntervalSince1970) + 1)
                #expect(await waiting.waitForExit(timeout: .seconds(6)) == 0, "\(waiting.output)")
                let took = Date().timeIntervalSince(startedAt)
                #expect(took < 2.5, "answered \(took) s after the request (the upstream answers after 5 s)")
                #expect(waiting.output.contains("status 401"), "\(waiting.output)")
                let answer = (try? String(contentsOfFile: body, encoding: .utf8)) ?? ""
                #expect(answer.contains("invalid_token") && answer.contains("token revoked"), "\(answer)")
                let head = (try? String(contentsOfFile: directory + "/waiting.head", encoding: .utf8)) ?? ""
                #expect(head.lowercased().contains("www-authenticate: bearer") && head.contains("error=\"invalid_token\""), "\(head)")
                #expect(head.lowercased().contains("connection: close"), "\(head)")
            }
            #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="token_revoked"}"#) == 1)
        }
    }

    /// The build before watched no HTTP/1.1 request: a stream admitted with a token (server-sent
    /// events, a long download) went on after the token was revoked or expired — an attacker
    /// review's ran 9 s past `exp` over HTTP/1.1 while its HTTP/2 twin was reset at `exp`.
    @Test("over HTTP/1.1, revoking a subject cuts its streaming response within a second (the connection reset before the last chunk); another subject's keeps streaming; a response that arrives in one read opens no session")
    func http1RevocationCutsTheStream() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-h1-sessions")
        try await withCluster { cluster in
            let gateway = try await cluster.startGateway(id: "gw-h1")
            let short = try gateway.request("GET", "/status/200", headers: [("Authorization", "Bearer \(try cluster.token(sub: "alice"))")])
            #expect(short.status == 200)
            #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="upstream"}"#) == nil,
                    "a response that arrived in one read opened a session")
            let (exit, took) = try await revokeOneOfTwo(cluster, gateway: gateway, directory: directory, http2: false) { () throws in
                let open = try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_open{protocol="http1"}"#)
                #expect(open == 2)
            }
            // curl: 56 is "failure when receiving data" (the connection reset), 18 "transfer closed
            // with outstanding read data remaining" — either way the body was cut before its end.
            #expect(exit == 56 || exit == 18, "curl exit \(String(describing: exit))")
            #expect(took < 1.0, "the stream ended \(took) s after the revocation")
            #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="token_revoked"}"#) == 1)
        }
    }

    /// An attacker review kept this stream (and a WebSocket, an HTTP/2 stream and a gRPC call)
    /// open on a cluster's gateway after the reload that took the leaked secret away: in a
    /// cluster an issuer left without keys of its own may get them from the control plane, so the
    /// reload did not count it as removed, and its set, no longer loaded, told the sessions nothing.
    @Test("on a cluster's gateway, a reload that takes an issuer's HMAC secret away cuts the HTTP/1.1 stream its token opened at once, counted as token_revoked")
    func reloadPullingTheSecretCutsTheStream() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-h1-sessions-reload")
        try await withCluster { cluster in
            let secret = SymmetricKey(size: .bits256)
            let secretText = secret.withUnsafeBytes { Base64URL.encode(Array($0)) }
            func config(withSecret: Bool, port: Int, admin: Int) -> String {
                cluster.gatewayConfig(port: port, adminPort: admin, nodeID: "gw-h1-reload").replacingOccurrences(
                    of: "    algorithms: [ES256]\n    jwks_file: jwks.json\n",
                    with: "    algorithms: [HS256]\n" + (withSecret ? "    hmac_secrets: [{kid: h1, secret_base64url: \(secretText), alg: HS256}]\n" : ""))
            }
            let gateway = try await GatewayProcess.start { port, admin, _ in config(withSecret: true, port: port, admin: admin) }
            defer { Task { await gateway.stop() } }
            let now = Int64(Date().timeIntervalSince1970)
            let token = try JWTSigner(key: .hmac(secret, .HS256), keyID: "h1").sign(claims: [
                "iss": .string(TestCluster.issuer), "aud": .string(TestCluster.audience), "sub": .string("mallory"),
                "iat": .integer(now - 5), "exp": .integer(now + 600),
            ])
            let (stream, body) = try hold(port: gateway.port, path: "/drip/50", token: token, directory: directory, name: "stream", http2: false)
            try await withCleanup(stream, { await $0.kill() }) { stream in
                #expect(try await Poll.until(timeout: .seconds(10)) { ticks(in: body) >= 3 }, "the stream did not start: \(stream.output)")
                try config(withSecret: false, port: gateway.port, admin: gateway.adminPort).write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
                let reloadedAt = Date()
                gateway.process.signal(SIGHUP)
                let exit = await stream.waitForExit(timeout: .seconds(5))
                // curl: 56 (the connection reset) or 18 (closed before the last chunk): cut either way.
                #expect(exit == 56 || exit == 18, "curl exit \(String(describing: exit)): \(gateway.process.output.suffix(2000))")
                #expect(Date().timeIntervalSince(reloadedAt) < 2.0)
            }
            #expect(try await Poll.until(timeout: .seconds(5)) { gateway.process.output.contains("configuration reloaded") })
            #expect(try PrometheusText.sample(gateway.metrics(), #"portcullis_sessions_closed_total{protocol="http1",reason="token_revoked"}"#) == 1)
            #expect(try gateway.request("GET", "/x", headers: [("Authorization", "Bearer \(token)")]).status == 401)
        }
    }
}
