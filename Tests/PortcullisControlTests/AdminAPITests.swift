import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    @Suite("admin API")
    struct AdminAPITests {
        @Test("a bad config exits 2 naming file:line:key; --check accepts a good one")
        func configExitCodes() throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-ctl-cfg")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let file = directory + "/control.yaml"
            try "cluster: {redis: redis://127.0.0.1:1, secret: \(String(repeating: "A", count: 43))}\nadmin_tokens: [{name: ops, sha256: zz}]\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let bad = try runCommand(PortcullisBinary.path, ["control", "--config", file])
            #expect(bad.status == 2)
            #expect(bad.stderr.contains("control.yaml:2:"))
            #expect(bad.stderr.contains("admin_tokens[0].sha256"))
            try "cluster: {redis: redis://127.0.0.1:1, secret: \(String(repeating: "A", count: 43))}\nadmin_tokens: [{name: ops, sha256: \(sha256Hex("t"))}]\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let good = try runCommand(PortcullisBinary.path, ["control", "--config", file, "--check"])
            #expect(good.status == 0, "\(good.stderr)")
        }

        @Test("calls without or with a wrong credential (of the right length or not) are refused; each credential is audited by name")
        func authentication() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            for path in ["/v1/status", "/v1/nodes", "/v1/keys", "/v1/revocations", "/v1/audit", "/v1/ratelimits"] {
                let none = try control.admin("GET", path, token: "")
                #expect(none.status == 401, "\(path)")
                #expect(none.header("www-authenticate")?.hasPrefix("Bearer") == true)
                #expect(none.json["error"] as? String == "unauthorized")
                // Wrong by one character at the same length, and the real token cut short or extended.
                let token = ControlCluster.adminToken
                for wrongToken in ["test-admin-token-b2f1c8", String(token.dropLast()), token + "0"] {
                    let wrong = try control.admin("GET", path, token: wrongToken)
                    #expect(wrong.status == 401, "\(path) \(wrongToken)")
                    #expect(wrong.header("www-authenticate")?.contains("invalid_token") == true)
                }
                #expect(try control.admin("GET", path).status == 200, "\(path)")
            }
            // A refused mutation changes nothing.
            let refused = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"mallory"}"#, token: "nope")
            #expect(refused.status == 401)
            let list = try control.admin("GET", "/v1/revocations?kind=subject&value=mallory")
            #expect((list.json["items"] as? [Any])?.isEmpty == true)

            // Both configured credentials work, and the audit names who did what from where.
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"eve"}"#).status == 201)
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"client","value":"bad-app"}"#, token: "another-admin-token").status == 201)
            let audit = try control.admin("GET", "/v1/audit?count=10").json["entries"] as? [[String: Any]] ?? []
            let creates = audit.filter { $0["action"] as? String == "revocation.create" }
            #expect(creates.count == 2)
            #expect(creates.first?["actor"] as? String == "second")
            #expect(creates.first?["target"] as? String == "client:bad-app")
            #expect(creates.last?["actor"] as? String == "test-ops")
            #expect((creates.last?["from"] as? String)?.hasPrefix("127.0.0.1:") == true)
            #expect(creates.last?["outcome"] as? String == "ok")
            #expect(creates.last?["status"] as? Int == 201)
            // The refused mutation is on record too.
            #expect(audit.contains { $0["action"] as? String == "POST /v1/revocations" && $0["outcome"] as? String == "unauthorized" && $0["actor"] as? String == "-" })
            #expect(try cluster.redis.cli("XLEN", "portcullis:audit") == "3")
            // The log line too.
            #expect(control.process.output.contains("admin revocation.create"))

            // Open paths and unknown paths.
            #expect(try control.get(port: control.adminPort, "/metrics").status == 200)
            let unknown = try control.admin("GET", "/v1/nothing")
            #expect(unknown.status == 404)
            #expect(unknown.json["error"] as? String == "not_found")
        }

        @Test("revocations: every kind's success shape, clear 400s, paging, lifting, audit, metrics")
        func revocationShapes() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let exp = Int(Date().timeIntervalSince1970) + 600
            let created = try control.admin("POST", "/v1/revocations", json: #"{"kind":"jti","value":"tok-1","exp":\#(exp),"reason":"leaked"}"#)
            #expect(created.status == 201)
            let body = created.json
            #expect((body["id"] as? String)?.hasPrefix("rev_") == true)
            #expect(body["kind"] as? String == "jti")
            #expect(body["operation"] as? String == "add")
            #expect(body["until"] as? Int == exp)
            #expect(body["actor"] as? String == "test-ops")
            #expect(body["reason"] as? String == "leaked")
            #expect(body["sequence"] as? Int == 1)
            #expect((body["propagation"] as? [String: Any])?["complete"] as? Bool == true)
            #expect(created.header("content-type") == "application/json")
            #expect(try cluster.redis.cli("ZRANGEBYSCORE", "portcullis:rev:log", "1", "1").contains("\"value\":\"tok-1\""))

            let subject = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"bob","before":"now","issuer":"https://idp"}"#)
            #expect(subject.status == 201)
            #expect(subject.json["issuer"] as? String == "https://idp")
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"client","value":"app-9"}"#).status == 201)
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"key","value":"kid-7"}"#).status == 201)

            for (json, field) in [
                (#"{"value":"x"}"#, "kind"), (#"{"kind":"token","value":"x"}"#, "kind"), (#"{"kind":"jti"}"#, "value"),
                (#"{"kind":"jti","value":"x","exp":1000}"#, "exp"), (#"{"kind":"jti","value":"x","before":"now"}"#, "before"),
                (#"{"kind":"subject","value":"x","when":1}"#, "when"), (#"{"kind":"subject","value":"x","before":"tuesday"}"#, "before"),
                (#"[1,2]"#, "body"), (#"{"kind":"jti""#, "body"), (#"{"kind":"jti","value":7}"#, "value"),
            ] {
                let refused = try control.admin("POST", "/v1/revocations", json: json)
                #expect(refused.status == 400, "\(json)")
                #expect(refused.json["error"] as? String == "invalid_request", "\(json)")
                #expect(refused.json["field"] as? String == field, "\(json): \(refused.text)")
                #expect((refused.json["error_description"] as? String)?.hasPrefix(field) == true, "\(json)")
            }
            let wrongType = try control.admin("POST", "/v1/revocations", json: nil, headers: [("Content-Type", "text/plain")])
            #expect(wrongType.status == 400)  // empty body: kind is required
            let badWait = try control.admin("POST", "/v1/revocations?wait=forever", json: #"{"kind":"subject","value":"x"}"#)
            #expect(badWait.status == 400)
            #expect(badWait.json["field"] as? String == "wait")
            #expect(try control.admin("POST", "/v1/revocations?wait=60s", json: #"{"kind":"subject","value":"x"}"#).json["field"] as? String == "wait")
            #expect(try control.admin("GET", "/v1/revocations?limit=0").json["field"] as? String == "limit")
            #expect(try control.admin("GET", "/v1/revocations?kind=nope").status == 400)

            // Listing, filters and paging.
            let all = try control.admin("GET", "/v1/revocations").json
            #expect((all["items"] as? [Any])?.count == 4)
            #expect(all["next_after"] is NSNull)
            let page = try control.admin("GET", "/v1/revocations?limit=3").json
            #expect((page["items"] as? [Any])?.count == 3)
            #expect(page["next_after"] as? Int == 3)
            let rest = try control.admin("GET", "/v1/revocations?after=3").json["items"] as? [[String: Any]]
            #expect(rest?.map { $0["kind"] as? String } == ["key"])
            let byKind = try control.admin("GET", "/v1/revocations?kind=subject&value=bob").json["items"] as? [[String: Any]]
            #expect(byKind?.count == 1)

            // One, with propagation; unknown ids.
            let id = try #require(subject.json["id"] as? String)
            let one = try control.admin("GET", "/v1/revocations/\(id)")
            #expect(one.status == 200)
            #expect(one.json["value"] as? String == "bob")
            #expect(one.json["propagation"] != nil)
            #expect(try control.admin("GET", "/v1/revocations/rev_nope").status == 404)

            // Only subject, client and grant cut-offs can be lifted.
            let jtiID = try #require(body["id"] as? String)
            let notDeletable = try control.admin("DELETE", "/v1/revocations/\(jtiID)")
            #expect(notDeletable.status == 409)
            #expect(notDeletable.json["error"] as? String == "not_deletable")
            let lifted = try control.admin("DELETE", "/v1/revocations/\(id)?reason=mistake")
            #expect(lifted.status == 200)
            #expect(lifted.json["operation"] as? String == "delete")
            #expect(lifted.json["kind"] as? String == "subject")
            #expect(try cluster.redis.cli("HEXISTS", "portcullis:rev:sub", "https://idp|bob") == "0")
            #expect(try control.admin("DELETE", "/v1/revocations/rev_nope").status == 404)

            // Every mutation is audited, refused ones included.
            let audit = try control.admin("GET", "/v1/audit?count=100").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.filter { $0["action"] as? String == "revocation.create" && $0["outcome"] as? String == "ok" }.count == 4)
            #expect(audit.filter { $0["action"] as? String == "revocation.create" && $0["outcome"] as? String == "invalid_request" }.count >= 10)
            #expect(audit.contains { $0["action"] as? String == "revocation.delete" && $0["outcome"] as? String == "not_deletable" && $0["status"] as? Int == 409 })
            #expect(audit.contains { $0["action"] as? String == "revocation.delete" && $0["outcome"] as? String == "ok" && $0["target"] as? String == id })

            let metrics = try control.metrics()
            #expect(metrics.contains(#"portcullis_revocations_total{kind="jti",operation="add"} 1"#))
            #expect(metrics.contains(#"portcullis_revocations_total{kind="subject",operation="delete"} 1"#))
            #expect(metrics.contains(#"portcullis_admin_requests_total{method="POST",route="/v1/revocations",status="201"}"#))
        }

        @Test("a grant revocation (one subject's tokens for one client), from the admin API or the CLI's --sub with --client, refuses exactly those tokens at the gateway and can be lifted, once (409 already_lifted after); a grant without client, or client on another kind, is a 400 naming client")
        func grantRevocations() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let token = try cluster.clientCredentials()
            let claims = claims(of: token.access)
            let subject = try #require(claims["sub"] as? String)
            let client = try #require(claims["client_id"] as? String)
            #expect(try cluster.statuses(token.access) == [200])

            for (json, field) in [(#"{"kind":"grant","value":"x"}"#, "client"), (#"{"kind":"subject","value":"x","client":"y"}"#, "client"),
                                  (#"{"kind":"grant","value":"x","client":"a\u0001b"}"#, "client"), (#"{"kind":"grant","value":"x","client":""}"#, "client")] {
                let refused = try control.admin("POST", "/v1/revocations", json: json)
                #expect(refused.status == 400 && refused.json["field"] as? String == field, "\(json): \(refused.text)")
            }
            // Another client's grant for the same subject, and the subject's grant for another client, leave the token alone.
            let otherClient = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"grant","value":"\#(subject)","client":"other-app"}"#)
            #expect(otherClient.status == 201 && otherClient.json["client"] as? String == "other-app", "\(otherClient.status) \(otherClient.text)")
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--sub", "someone-else", "--client", client, "--wait",
                                                           "--endpoint", control.adminURL, "--token", ControlCluster.adminToken])
            #expect(cli.status == 0 && cli.stdout.contains("revoked grant someone-else for client \(client)"), "\(cli.stdout) \(cli.stderr)")
            #expect(try cluster.statuses(token.access) == [200])

            let grant = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"grant","value":"\#(subject)","client":"\#(client)"}"#)
            #expect(grant.status == 201, "\(grant.text)")
            #expect(grant.json["kind"] as? String == "grant" && grant.json["value"] as? String == subject && grant.json["before_ms"] is Int)
            #expect(try cluster.statuses(token.access) == [401])
            let listed = try runCommand(PortcullisBinary.path, ["admin", "revocations", "--kind", "grant", "--endpoint", control.adminURL,
                                                              "--token", ControlCluster.adminToken])
            #expect(listed.stdout.contains("\(subject) (client \(client))"), "\(listed.stdout)")
            let id = try #require(grant.json["id"] as? String)
            let lifted = try control.admin("DELETE", "/v1/revocations/\(id)")
            #expect(lifted.status == 200 && lifted.json["kind"] as? String == "grant" && lifted.json["client"] as? String == client, "\(lifted.text)")
            try await eventually("the lifted grant lets the token pass again") { try cluster.statuses(token.access) == [200] }
            // Once the control plane holds the lift, lifting again writes nothing.
            try await eventually("the control plane applied the lift") {
                ((try control.admin("GET", "/v1/status").json["revocations"] as? [String: Any])?["in_force"] as? [String: Any])?["grant"] as? Int == 2
            }
            let again = try control.admin("DELETE", "/v1/revocations/\(id)")
            #expect(again.status == 409 && again.json["error"] as? String == "already_lifted", "\(again.text)")
        }

        @Test("a session revocation (kind session, by the API and the CLI's --sid) makes the gateway refuse the tokens carrying that sid, not others; it cannot be lifted; naming a family of the built-in server's, it also ends the family's refreshes and its refresh token introspects inactive")
        func sessionRevocations() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let first = try cluster.clientCredentials(), second = try cluster.clientCredentials()
            let sid = try #require(claims(of: first.access)["sid"] as? String)
            let otherSid = try #require(claims(of: second.access)["sid"] as? String)
            #expect(sid != otherSid)
            #expect(try cluster.statuses(first.access) == [200] && cluster.statuses(second.access) == [200])
            // For another issuer: nothing of this one's.
            let elsewhere = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"session","value":"\#(sid)","issuer":"https://elsewhere"}"#)
            #expect(elsewhere.status == 201, "\(elsewhere.text)")
            #expect(try cluster.statuses(first.access) == [200])
            let revoked = try control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"session","value":"\#(sid)","issuer":"\#(cluster.issuer)"}"#)
            #expect(revoked.status == 201 && revoked.json["kind"] as? String == "session" && revoked.json["value"] as? String == sid, "\(revoked.text)")
            #expect(try cluster.statuses(first.access) == [401] && cluster.statuses(second.access) == [200])
            // The family is marked revoked too, so it refreshes no more once the revocation ends.
            #expect(try cluster.redis.cli("HGET", "portcullis:as:rtf:" + sid, "revoked") == "1")
            let basic = ("demo-client", ControlCluster.clientSecret)
            let refresh = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": try #require(first.refresh)], basic: basic)
            #expect(refresh.status == 400 && refresh.json["error"] as? String == "invalid_grant", "\(refresh.text)")
            let introspected = try control.oauth("/oauth2/introspect", form: ["token": try #require(first.refresh), "token_type_hint": "refresh_token"], basic: basic)
            #expect(introspected.json["active"] as? Bool == false, "\(introspected.text)")
            let lift = try control.admin("DELETE", "/v1/revocations/\(try #require(revoked.json["id"] as? String))")
            #expect(lift.status == 409 && lift.json["error"] as? String == "not_deletable", "\(lift.text)")
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--sid", otherSid, "--wait",
                                                           "--endpoint", control.adminURL, "--token", ControlCluster.adminToken])
            #expect(cli.status == 0 && cli.stdout.contains("revoked session \(otherSid)"), "\(cli.stdout) \(cli.stderr)")
            #expect(try cluster.statuses(second.access) == [401])
            try await eventually("the control plane's status counts the three sessions in force") {
                ((try control.admin("GET", "/v1/status").json["revocations"] as? [String: Any])?["in_force"] as? [String: Any])?["session"] as? Int == 3
            }
        }

        /// The build before read the head while live changes went on being applied (the node's
        /// sync is an actor; the read a suspension), then compared it with what was applied by
        /// then: an honest head looked behind, "Redis tampering: the head went back" (an attacker
        /// review, with 8 callers writing at once; a race, so the build before did not fail every
        /// run). A control plane's writer compared a head it had read with positions taken after
        /// the read, and would have started a new epoch on such a false rollback.
        @Test("revocations written at once by 8 admin callers through two control planes raise no tampering alarm on either or on a gateway, and the gateway applies every one")
        func concurrentWritesRaiseNoAlarm() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let gateway = try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let peer = try await cluster.startPeerControl()
            defer { Task { await peer.stop() } }
            // Eight threads of a Python client, each writing 60 cut-offs one after another, half
            // of them through each control plane.
            let writers = """
            import http.client, json, sys, threading
            created = []
            def write(caller):
                for index in range(60):
                    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1].split(",")[caller % 2]), timeout=30)
                    conn.request("POST", "/v1/revocations", '{"kind":"subject","value":"nobody-%d-%d"}' % (caller, index),
                                 {"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
                    created.append(conn.getresponse().status)
                    conn.close()
            threads = [threading.Thread(target=write, args=(caller,)) for caller in range(8)]
            [thread.start() for thread in threads]
            [thread.join() for thread in threads]
            print(json.dumps({str(status): created.count(status) for status in set(created)}))
            """
            let result = try runCommand("/usr/bin/env", ["python3", "-c", writers, "\(control.adminPort),\(peer.adminPort)", ControlCluster.adminToken])
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == #"{"201": 480}"#, "\(result.stdout) \(result.stderr)")
            try await eventually("the gateway applied all 480") {
                try gateway.metrics().contains(#"portcullis_revocation_entries{kind="subject"} 480"#)
            }
            for metrics in [try control.metrics(), try peer.metrics(), try gateway.metrics()] {
                let alarms = metrics.split(separator: "\n").filter { $0.hasPrefix("portcullis_cluster_tampering_total{") }
                #expect(alarms.isEmpty, "\(alarms)")
            }
        }

        @Test("an issuer-limited revocation naming an iss the control plane does not know is written with a warning (a typo revokes nothing); a known iss gets none")
        func unknownIssuerWarning() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let known = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"bob","issuer":"\#(control.issuer)"}"#)
            #expect(known.status == 201 && known.json["warning"] == nil, "\(known.text)")
            let typo = try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"bob","issuer":"\#(control.issuer)/"}"#)
            #expect(typo.status == 201)
            #expect((typo.json["warning"] as? String)?.contains("no issuer the control plane knows has iss '\(control.issuer)/'") == true, "\(typo.text)")
            let batch = try control.admin("POST", "/v1/revocations/batch", json: #"{"revocations":[{"kind":"client","value":"a"},{"kind":"client","value":"b","issuer":"https://nobody"}]}"#)
            #expect((batch.json["warnings"] as? [String])?.count == 1 && (batch.json["warnings"] as? [String])?.first?.hasPrefix("revocations[1]: ") == true, "\(batch.text)")
            let cli = try runCommand(PortcullisBinary.path, ["admin", "revoke", "--sub", "carol", "--issuer", "https://nobody", "--endpoint", control.adminURL],
                                     environment: ["PORTCULLIS_ADMIN_TOKEN": ControlCluster.adminToken])
            #expect(cli.status == 0 && cli.stderr.contains("warning: no issuer the control plane knows"), "\(cli.stdout)\(cli.stderr)")
        }

        @Test("a write Redis cannot confirm answers 503, never 2xx")
        func redisDown() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            #expect(try cluster.control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"a"}"#).status == 201)
            let token = try cluster.clientCredentials()
            await cluster.redis.stop()
            let refused = try cluster.control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"b"}"#)
            #expect(refused.status == 503)
            #expect(refused.json["error"] as? String == "unavailable")
            #expect(try cluster.control.admin("GET", "/v1/status").status == 503)
            // The authorization server cannot record refresh tokens or revocations either: 503, retry.
            let tokenRefused = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": try #require(token.refresh)],
                                                         basic: ("demo-client", ControlCluster.clientSecret))
            #expect(tokenRefused.status == 503)
            #expect(tokenRefused.json["error"] as? String == "temporarily_unavailable")
            #expect(tokenRefused.header("retry-after") == "1")
            let revokeRefused = try cluster.control.oauth("/oauth2/revoke", form: ["token": token.access], basic: ("demo-client", ControlCluster.clientSecret))
            #expect(revokeRefused.status == 503)
            try await cluster.redis.restart()
            try await eventually(timeout: .seconds(10), "writes succeed again after Redis returns") {
                try cluster.control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"c"}"#).status == 201
            }
        }
    }
}
