import Foundation
import Logging
import NIOPosix
import PortcullisCluster
@testable import PortcullisControl
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// A party that can write to Redis but has no cluster secret, against the records the control
/// plane keeps there for sign-in, its authorization server and the operator console
/// (`RecordMAC`). Each attack was run on the build before, where it worked (docs/security.md,
/// "What a Redis writer can and cannot do").
extension ControlPlaneTests {
    @Suite("records in Redis a writer without the cluster secret forges")
    struct ForgedControlRecordsTests {
        /// The builds before issued tokens from each: alice's claims with `orders:write`, which
        /// `web-app` never asked for, from a code written into Redis; a token for `root` from a
        /// refresh token and family written into Redis; and bob's token from alice's real code
        /// whose record was changed to name bob.
        @Test("a Redis writer without the cluster secret mints no token: an authorization code, or a refresh token with its family, written into Redis by hand for any user and scope is unknown (invalid_grant), and so is a real code whose record was changed to name another user and scope; a consent written for a user does not spare the consent page")
        func forgedCodesAndRefreshTokensMintNothing() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let redis = cluster.redis
            let now = String(Int(Date().timeIntervalSince1970))

            // A code of the attacker's making, for alice with more scope than the client has.
            let code = "forged-code-\(UUID().uuidString)"
            try redis.cli(["HSET", "portcullis:as:code:" + Hex.sha256(code), "status", "active", "client_id", "web-app",
                           "redirect_uri", SignInBrowser.redirectURI, "sub", "alice", "scope", "orders:read orders:write orders:admin",
                           "challenge", browser.challenge, "auth_time", now, "mac", String(repeating: "A", count: 43)])
            let fromForgedCode = try browser.redeem(code)
            #expect(fromForgedCode.status == 400 && fromForgedCode.json["error"] as? String == "invalid_grant", "\(fromForgedCode.text)")
            #expect(fromForgedCode.json["access_token"] == nil)

            // A refresh token and family of the attacker's making, for a subject of its choosing.
            let refresh = "forged-refresh-\(UUID().uuidString)"
            let expires = String(Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000)
            try redis.cli(["HSET", "portcullis:as:rtf:fam_forged", "client_id", "web-app", "sub", "root", "created_ms", "0", "revoked", "0", "user", "0"])
            try redis.cli(["HSET", "portcullis:as:rt:" + Hex.sha256(refresh), "family", "fam_forged", "client_id", "web-app", "sub", "root",
                           "scope", "orders:read", "aud", "api://payments", "status", "active", "iat_ms", "0", "exp_ms", expires])
            let fromForgedRefresh = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app",
                                                                                     "refresh_token": refresh])
            #expect(fromForgedRefresh.status == 400 && fromForgedRefresh.json["error"] as? String == "invalid_grant", "\(fromForgedRefresh.text)")

            // alice's real code, its record changed to name bob and more scope.
            let real = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            try redis.cli(["HSET", "portcullis:as:code:" + Hex.sha256(real), "sub", "bob", "scope", "orders:read orders:write"])
            let fromChangedCode = try browser.redeem(real)
            #expect(fromChangedCode.status == 400 && fromChangedCode.json["error"] as? String == "invalid_grant", "\(fromChangedCode.text)")

            // A consent written for bob: he is asked all the same.
            try redis.cli(["HSET", "portcullis:as:consent:bob", "web-app", "orders:read"])
            let bobBrowser = SignInBrowser(control: cluster.control)
            var login = SignInBrowser.hiddenFields(try bobBrowser.authorize(bobBrowser.parameters()))
            login["username"] = "bob"
            login["password"] = "bob-password-2"
            let bobAfterLogin = try bobBrowser.post("/oauth2/authorize", login)
            #expect(bobAfterLogin.status == 200 && bobAfterLogin.text.contains("Allow access?"), "\(bobAfterLogin.status) \(bobAfterLogin.text)")

            // The flow itself still works: a code nobody touched is redeemed, and its refresh token rotates.
            // Signed in, with consent remembered: the authorization request redirects at once.
            let honest = try #require(SignInBrowser.redirectParameters(try browser.authorize(browser.parameters()))["code"])
            let tokens = try browser.redeem(honest)
            #expect(tokens.status == 200, "\(tokens.text)")
            let refreshed = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app",
                                                                             "refresh_token": try #require(tokens.json["refresh_token"] as? String)])
            #expect(refreshed.status == 200, "\(refreshed.text)")
            #expect(refreshed.json["scope"] as? String == "orders:read")
        }

        /// The list of what was issued under a consent is not signed: the build before, with the
        /// list emptied, revoked nothing at "Revoke access" and the client went on refreshing.
        @Test("a Redis writer who empties the list of what was issued under a consent does not keep the client refreshing after the user revokes its access: the refresh token is refused (invalid_grant)")
        func emptiedGrantListRefreshesNothing() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let tokens = try browser.redeem(code)
            let refresh = try #require(tokens.json["refresh_token"] as? String)
            // The writer empties the list, then the user revokes the client's access.
            let grants = try cluster.redis.cli("KEYS", "portcullis:as:grants:*").split(separator: "\n").map(String.init)
            #expect(grants.count == 1)
            for key in grants { try cluster.redis.cli("DEL", key) }
            let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])
            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200 && revoked.text.contains("Access for web-app revoked"), "\(revoked.text)")
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh])
            #expect(refreshed.status == 400 && refreshed.json["error"] as? String == "invalid_grant", "\(refreshed.text)")
            #expect(refreshed.json["access_token"] == nil)
            // Given consent again, a new sign-in works as before.
            let again = try browser.authorize(browser.parameters())
            #expect(again.status == 200 && again.text.contains("Allow access?"))
        }

        /// The build before revoked by jti every token the consent's unsigned list named: a writer
        /// who added another client's token to it had the control plane sign its revocation.
        @Test("a Redis writer who stuffs the list of what was issued under a consent with another client's token and refresh-token family does not get them revoked when the user revokes access: the user's own token and session are revoked, the other token passes and its family refreshes")
        func stuffedGrantListRevokesNoMore() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let redis = cluster.redis
            let browser = SignInBrowser(control: cluster.control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let access = try #require(try browser.redeem(code).json["access_token"] as? String)
            let victim = try cluster.clientCredentials()
            let victimJTI = try #require(claims(of: victim.access)["jti"] as? String)
            let victimExp = try #require(claims(of: victim.access)["exp"] as? Int)
            let victimFamily = try #require(claims(of: victim.access)["sid"] as? String)
            let list = try #require(try redis.cli("KEYS", "portcullis:as:grants:*").split(separator: "\n").first.map(String.init))
            try redis.cli("ZADD", list, String(victimExp), "jti:" + victimJTI)
            try redis.cli("ZADD", list, String(victimExp), "fam:" + victimFamily)
            let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])
            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200, "\(revoked.text)")
            try await eventually("the user's own token is refused") { try cluster.statuses(access) == [401] }
            // The revocation has been applied everywhere by now; the other client's token passes.
            #expect(try cluster.statuses(victim.access) == [200])
            #expect((try cluster.control.admin("GET", "/v1/revocations?kind=jti").json["items"] as? [[String: Any]] ?? []).isEmpty)
            // The user's family's session is revoked (a refresh racing the press carries its sid); the victim's is not.
            let sessions = (try cluster.control.admin("GET", "/v1/revocations?kind=session").json["items"] as? [[String: Any]] ?? []).compactMap { $0["value"] as? String }
            #expect(sessions == [try #require(claims(of: access)["sid"] as? String)], "\(sessions)")
            let refreshed = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": try #require(victim.refresh)],
                                                      basic: ("demo-client", ControlCluster.clientSecret))
            #expect(refreshed.status == 200, "\(refreshed.text)")
        }

        /// The build before kept the jtis of a family's access tokens in an unsigned list
        /// (`as:rtf:<family>:jti`) and revoked what it named: emptied, a reuse or an RFC 7009
        /// revocation revoked nothing, and the family's unsigned `revoked` field set back to 0
        /// had its newest refresh token refresh again.
        @Test("a Redis writer who empties a refresh-token family's lists and revives the family keeps nothing: after a reuse, or an RFC 7009 revocation, every gateway refuses the access tokens issued in the family (their sid), and the family refreshes no more while its session revocation is in force")
        func revokedFamilyStaysRevoked() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let control = cluster.control
            let redis = cluster.redis
            let basic = ("demo-client", ControlCluster.clientSecret)
            func refresh(_ token: String) throws -> HTTPTestResponse {
                try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": token], basic: basic)
            }
            func familyKeys() throws -> [String] {
                try redis.cli("KEYS", "portcullis:as:rtf:*").split(separator: "\n").map(String.init)
            }
            /// What a writer without the secret can do to every family: empty whatever lists it
            /// has, and set it back to not revoked.
            func emptyListsAndRevive() throws {
                for key in try familyKeys() {
                    if try redis.cli("TYPE", key) == "hash" {
                        try redis.cli("HSET", key, "revoked", "0")
                        try redis.cli("HDEL", key, "revoked_reason", "revoked_ms", "reuse_revoked")
                    } else {
                        try redis.cli("DEL", key)
                    }
                }
            }
            let bystander = try cluster.clientCredentials()
            let first = try cluster.clientCredentials()
            let second = try refresh(try #require(first.refresh))
            #expect(second.status == 200, "\(second.text)")
            let access2 = try #require(second.json["access_token"] as? String)
            let refresh2 = try #require(second.json["refresh_token"] as? String)
            #expect(try cluster.statuses(first.access) == [200, 200] && cluster.statuses(access2) == [200, 200])

            // A reuse, with the family's lists emptied first and the family revived after.
            try emptyListsAndRevive()
            let reuse = try refresh(try #require(first.refresh))
            #expect(reuse.status == 400 && reuse.json["error"] as? String == "invalid_grant", "\(reuse.text)")
            try emptyListsAndRevive()
            try await eventually("the family's access tokens are refused on every gateway") {
                try cluster.statuses(first.access) == [401, 401] && cluster.statuses(access2) == [401, 401]
            }
            let refused = try cluster.gateways[1].request("GET", "/orders", headers: [("Authorization", "Bearer \(access2)")])
            #expect(refused.header("www-authenticate")?.contains("session") == true, "\(refused.header("www-authenticate") ?? "-")")
            let revived = try refresh(refresh2)
            #expect(revived.status == 400 && revived.json["error"] as? String == "invalid_grant", "\(revived.text)")
            // Introspection says what a refresh would: not active.
            let introspected = try control.oauth("/oauth2/introspect", form: ["token": refresh2, "token_type_hint": "refresh_token"], basic: basic)
            #expect(introspected.json["active"] as? Bool == false, "\(introspected.text)")

            // An RFC 7009 revocation of a refresh token, likewise.
            let other = try cluster.clientCredentials()
            let otherRefresh = try #require(other.refresh)
            try emptyListsAndRevive()
            #expect(try control.oauth("/oauth2/revoke", form: ["token": otherRefresh, "token_type_hint": "refresh_token"], basic: basic).status == 200)
            try emptyListsAndRevive()
            try await eventually("the revoked grant's access token is refused on every gateway") { try cluster.statuses(other.access) == [401, 401] }
            let afterRevoke = try refresh(otherRefresh)
            #expect(afterRevoke.status == 400 && afterRevoke.json["error"] as? String == "invalid_grant", "\(afterRevoke.text)")

            // Another grant of the same client is untouched.
            #expect(try cluster.statuses(bystander.access) == [200, 200])
            #expect(try refresh(try #require(bystander.refresh)).status == 200)
        }

        /// The build before revoked by the unsigned list alone, and took a consent record for
        /// consent whenever it verified: with the list emptied and the consent written back, the
        /// access token went on passing every gateway after **Revoke access** and the next
        /// authorization skipped the consent page.
        @Test("a Redis writer who empties the list of what was issued under a consent and writes the consent back after the user revokes it keeps nothing: gateways refuse the access token issued before, its refresh token is refused, and the next authorization asks for consent again")
        func revokedAccessStaysRevoked() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let control = cluster.control
            let redis = cluster.redis
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let tokens = try browser.redeem(code)
            let access = try #require(tokens.json["access_token"] as? String)
            let refresh = try #require(tokens.json["refresh_token"] as? String)
            let bystander = try cluster.clientCredentials()
            #expect(try cluster.statuses(access) == [200, 200])
            // The writer keeps a copy of the consent and empties the list; the user revokes access.
            let consent = try redis.cli("HGET", "portcullis:as:consent:alice", "web-app")
            #expect(!consent.isEmpty)
            for key in try redis.cli("KEYS", "portcullis:as:grants:*").split(separator: "\n").map(String.init) { try redis.cli("DEL", key) }
            let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])
            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200 && revoked.text.contains("Access for web-app revoked"), "\(revoked.text)")
            // The writer puts the consent back.
            try redis.cli("HSET", "portcullis:as:consent:alice", "web-app", consent)
            try await eventually("the access token issued before is refused on every gateway") { try cluster.statuses(access) == [401, 401] }
            let refused = try cluster.gateways[0].request("GET", "/orders", headers: [("Authorization", "Bearer \(access)")])
            #expect(refused.header("www-authenticate")?.contains("this client issued before") == true, "\(refused.header("www-authenticate") ?? "-")")
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh])
            #expect(refreshed.status == 400 && refreshed.json["error"] as? String == "invalid_grant", "\(refreshed.text)")
            let again = try browser.authorize(browser.parameters())
            #expect(again.status == 200 && again.text.contains("Allow access?"), "\(again.status) \(again.text)")
            #expect(!(try browser.get("/oauth2/account").text.contains("web-app (orders:read)")))
            // Another client's tokens are untouched; consent given anew is remembered, and its tokens pass.
            #expect(try cluster.statuses(bystander.access) == [200, 200])
            // A token stamped in the cut-off's own second is refused with it (whole-second iat, admin-api.md "Cut-offs").
            try await Task.sleep(for: .milliseconds(1100))
            var allow = SignInBrowser.hiddenFields(again)
            allow["decision"] = "allow"
            let renewed = try #require(SignInBrowser.redirectParameters(try browser.post("/oauth2/consent", allow))["code"])
            let fresh = try #require(try browser.redeem(renewed).json["access_token"] as? String)
            #expect(try cluster.statuses(fresh) == [200, 200])
            #expect(SignInBrowser.redirectParameters(try browser.authorize(browser.parameters()))["code"] != nil)
        }

        /// The build before left a session's lifetime to Redis's expiry alone: a writer who
        /// lifted it (`PERSIST`), or wrote a deleted record back, kept the session open for good.
        @Test("a signed-in session is over after its hour even when a Redis writer lifted its expiry or wrote it back: the lifetime is read from the signed sign-in time")
        func sessionLifetimeFromSignedTime() async throws {
            let redis = try await RedisServerFixture.start()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "test"))
            let secret = Array(repeating: UInt8(7), count: 32)
            let store = LoginSessionStore(client: client, keys: ClusterKeys(prefix: "portcullis:"),
                                          formMAC: LoginSessionStore.formMAC(secret: secret, cluster: "portcullis:"),
                                          recordMAC: RecordMAC.derive(secret: secret, cluster: "portcullis:"), namespace: "console:")
            let signedIn = try await store.create(username: "token:0:ops", authTime: Int64(Date().timeIntervalSince1970))
            let key = try #require(try await client.send("KEYS", "portcullis:as:session:console:*").array?.first?.string)
            #expect(try await client.send("PERSIST", RedisArgument(key)).int == 1)
            #expect(try await store.lookup(signedIn.id)?.username == "token:0:ops")
            #expect(try await store.lookup(signedIn.id, now: Date().addingTimeInterval(3500)) != nil)
            #expect(try await store.lookup(signedIn.id, now: Date().addingTimeInterval(3700)) == nil, "an hour and more after sign-in")
            await client.close()
            try await group.shutdownGracefully()
            await redis.shutdown()
        }

        /// The build before opened every page to a copied session, and to a forged one naming a
        /// certificate subject where certificates are accepted; its revoke form lifted a client's
        /// cut-off in the operator's name.
        @Test("a Redis writer cannot use the operator console: a signed-in session's record copied under a session id of its choosing opens no page, nor does one it writes naming a principal; the operator's own session goes on")
        func copiedConsoleSessionsOpenNothing() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let operatorVisitor = ConsoleVisitor(control: cluster.control)
            try operatorVisitor.signIn()
            #expect(try operatorVisitor.get("/console/cluster").status == 200)
            let redis = cluster.redis
            let key = try #require(try redis.cli("KEYS", "portcullis:as:session:console:*").split(separator: "\n").first.map(String.init))
            let principal = try redis.cli("HGET", key, "user")
            #expect(!principal.isEmpty)

            // The operator's record, copied whole (its MAC too) under an id the attacker chose.
            let copiedID = "attacker-\(UUID().uuidString.prefix(8))"
            try redis.cli(["HSET", "portcullis:as:session:console:" + Hex.sha256(copiedID), "csrf", "attacker-csrf", "user", principal,
                           "auth_time", try redis.cli("HGET", key, "auth_time"), "mac", try redis.cli("HGET", key, "mac")])
            let attacker = ConsoleVisitor(control: cluster.control)
            attacker.cookie = copiedID
            #expect(try attacker.get("/console/cluster").header("location") == "/console/sign-in")
            #expect(try attacker.post("/console/revocations", ["kind": "subject", "value": "victim", "csrf_token": "attacker-csrf"])
                .header("location") == "/console/sign-in")
            // One written from scratch, naming a certificate subject.
            let forgedID = "forged-\(UUID().uuidString.prefix(8))"
            try redis.cli(["HSET", "portcullis:as:session:console:" + Hex.sha256(forgedID), "csrf", "attacker-csrf", "user", "cert:CN=ops",
                           "auth_time", String(Int(Date().timeIntervalSince1970))])
            attacker.cookie = forgedID
            #expect(try attacker.get("/console/keys").header("location") == "/console/sign-in")
            let audit = try cluster.control.admin("GET", "/v1/audit?count=20").json["entries"] as? [[String: Any]] ?? []
            #expect(!audit.contains { $0["action"] as? String == "revocation.create" }, "\(audit)")
            #expect(try operatorVisitor.get("/console/cluster").status == 200)
        }
    }
}
