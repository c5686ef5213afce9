import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    @Suite("built-in authorization server")
    struct AuthorizationServerTests {
        @Test("metadata, JWKS, client_credentials tokens (RFC 9068) and the token endpoint's errors")
        func tokenEndpoint() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control

            let metadata = try control.get(port: control.port, "/.well-known/oauth-authorization-server").json
            #expect(metadata["issuer"] as? String == cluster.issuer)
            #expect(metadata["token_endpoint"] as? String == cluster.issuer + "/oauth2/token")
            #expect(metadata["revocation_endpoint"] as? String == cluster.issuer + "/oauth2/revoke")
            #expect(metadata["introspection_endpoint"] as? String == cluster.issuer + "/oauth2/introspect")
            // No users file: no authorization endpoint, so no authorization_code.
            #expect(metadata["grant_types_supported"] as? [String] == ["client_credentials", "refresh_token"])
            #expect(metadata["authorization_endpoint"] == nil)
            #expect(try control.get(port: control.port, "/.well-known/openid-configuration").json["jwks_uri"] as? String == cluster.issuer + "/oauth2/jwks")
            let jwks = try control.get(port: control.port, "/oauth2/jwks").json["keys"] as? [[String: Any]] ?? []
            #expect(jwks.count == 1)
            #expect(jwks.first?["d"] == nil)  // public keys only

            let response = try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials", "scope": "orders:read"],
                                             basic: ("demo-client", ControlCluster.clientSecret))
            #expect(response.status == 200)
            #expect(response.header("cache-control") == "no-store")
            #expect(response.json["token_type"] as? String == "Bearer")
            #expect(response.json["expires_in"] as? Int == 300)
            #expect(response.json["scope"] as? String == "orders:read")
            #expect(response.json["refresh_token"] is String)
            let access = try #require(response.json["access_token"] as? String)
            #expect(header(of: access)["typ"] as? String == "at+jwt")
            #expect(header(of: access)["kid"] as? String == jwks.first?["kid"] as? String)
            let payload = claims(of: access)
            #expect(payload["iss"] as? String == cluster.issuer)
            #expect(payload["sub"] as? String == "demo-client")
            #expect(payload["client_id"] as? String == "demo-client")
            #expect(payload["aud"] as? String == ControlCluster.audience)
            #expect(payload["scope"] as? String == "orders:read")
            #expect((payload["jti"] as? String)?.isEmpty == false)
            #expect((payload["exp"] as? Int ?? 0) - (payload["iat"] as? Int ?? 0) == 300)
            #expect(try cluster.statuses(access) == [200])

            // client_secret_post; a client without the refresh grant gets no refresh token.
            let post = try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials", "client_id": "other-client",
                                                                  "client_secret": ControlCluster.otherSecret])
            #expect(post.status == 200)
            #expect(post.json["refresh_token"] == nil)
            #expect(post.json["scope"] as? String == "orders:read")
            // A token with a refresh-token family carries it as sid; one without, none.
            #expect((payload["sid"] as? String)?.hasPrefix("fam_") == true)
            #expect(claims(of: try #require(post.json["access_token"] as? String))["sid"] == nil)

            // Errors (RFC 6749 §5.2).
            let wrongSecret = try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials"], basic: ("demo-client", "nope"))
            #expect(wrongSecret.status == 401)
            #expect(wrongSecret.json["error"] as? String == "invalid_client")
            #expect(wrongSecret.header("www-authenticate")?.hasPrefix("Basic") == true)
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials"], basic: ("ghost", "x")).json["error"] as? String == "invalid_client")
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials"]).status == 401)
            let noGrant = try control.oauth("/oauth2/token", form: [:], basic: ("demo-client", ControlCluster.clientSecret))
            #expect(noGrant.status == 400)
            #expect(noGrant.json["error"] as? String == "invalid_request")
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "password"], basic: ("demo-client", ControlCluster.clientSecret)).json["error"] as? String == "unsupported_grant_type")
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": "x"], basic: ("other-client", ControlCluster.otherSecret)).json["error"] as? String == "unauthorized_client")
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "client_credentials", "scope": "admin"], basic: ("demo-client", ControlCluster.clientSecret)).json["error"] as? String == "invalid_scope")
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": "forged"], basic: ("demo-client", ControlCluster.clientSecret)).json["error"] as? String == "invalid_grant")
            let metrics = try control.metrics()
            #expect(metrics.contains(#"portcullis_oauth_token_requests_total{grant_type="client_credentials",outcome="issued"} 2"#))
            #expect(metrics.contains(#"outcome="invalid_client""#))
        }

        /// The build before let a grant be refreshed for ever: a refresh token that leaked stayed
        /// good as long as it was used within each token's TTL, and a user never signed in again.
        @Test("a grant refreshes until refresh_token_max_lifetime from its start and then is refused, however often it was refreshed; a Redis writer moving its start forward does not revive it")
        func grantEndsAtItsMaximumLifetime() async throws {
            let cluster = try await ControlCluster(asExtra: "  refresh_token_max_lifetime: 4s\n")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let basic = ("demo-client", ControlCluster.clientSecret)
            var refresh = try #require(try cluster.clientCredentials().refresh)
            let started = ContinuousClock.now
            // Refreshed every half second, well within each token's TTL.
            var refreshed = 0
            while ContinuousClock.now - started < .seconds(3) {
                let next = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh], basic: basic)
                #expect(next.status == 200, "\(next.text)")
                refresh = try #require(next.json["refresh_token"] as? String)
                refreshed += 1
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(refreshed >= 4)
            try await Task.sleep(until: started + .seconds(4.5))
            let ended = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh], basic: basic)
            #expect(ended.status == 400 && ended.json["error"] as? String == "invalid_grant", "\(ended.text)")
            #expect((ended.json["error_description"] as? String)?.contains("maximum lifetime") == true, "\(ended.text)")
            // Introspection agrees: the refresh token is no longer active.
            let introspected = try control.oauth("/oauth2/introspect", form: ["token": refresh, "token_type_hint": "refresh_token"], basic: basic)
            #expect(introspected.json["active"] as? Bool == false, "\(introspected.text)")
            // A writer moves the family's start to now: the family's record no longer verifies.
            let families = try cluster.redis.cli("KEYS", "portcullis:as:rtf:*").split(separator: "\n").map(String.init)
            #expect(families.count == 1)
            for family in families {
                try cluster.redis.cli(["HSET", family, "created_ms", String(Int64(Date().timeIntervalSince1970 * 1000))])
            }
            let moved = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh], basic: basic)
            #expect(moved.status == 400 && moved.json["error"] as? String == "invalid_grant", "\(moved.text)")
            // A new grant refreshes as before.
            let fresh = try #require(try cluster.clientCredentials().refresh)
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": fresh], basic: basic).status == 200)
        }

        @Test("refresh rotates the token; a reused refresh token revokes its whole family, cluster-wide")
        func refreshReuse() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let control = cluster.control
            let basic = ("demo-client", ControlCluster.clientSecret)
            let first = try cluster.clientCredentials()
            let refresh1 = try #require(first.refresh)

            let second = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh1, "scope": "orders:read"], basic: basic)
            #expect(second.status == 200)
            let access2 = try #require(second.json["access_token"] as? String)
            let refresh2 = try #require(second.json["refresh_token"] as? String)
            #expect(refresh2 != refresh1)
            #expect(second.json["scope"] as? String == "orders:read")
            // Narrowing is fine; widening is not.
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh2, "scope": "orders:delete"], basic: basic).json["error"] as? String == "invalid_scope")
            // Another client cannot use it.
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh2], basic: ("other-client", ControlCluster.otherSecret)).status == 400)
            #expect(try cluster.statuses(first.access) == [200, 200])
            #expect(try cluster.statuses(access2) == [200, 200])

            // An unrelated grant of the same client must survive the family's revocation.
            let bystander = try cluster.clientCredentials()

            // The stolen first refresh token comes back.
            let reuse = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh1], basic: basic)
            #expect(reuse.status == 400)
            #expect(reuse.json["error"] as? String == "invalid_grant")
            #expect((reuse.json["error_description"] as? String)?.contains("family") == true)
            // Every access token of the family is refused by every gateway, the newest refresh token is dead too.
            try await eventually("the family's access tokens are revoked everywhere") {
                try cluster.statuses(first.access) == [401, 401] && cluster.statuses(access2) == [401, 401]
            }
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh2], basic: basic).json["error"] as? String == "invalid_grant")
            #expect(try cluster.statuses(bystander.access) == [200, 200])
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": try #require(bystander.refresh)], basic: basic).status == 200)

            #expect(try control.metrics().contains("portcullis_refresh_token_reuse_total 1"))
            // Both access tokens carry the family as sid: one signed session revocation, no jti.
            #expect(claims(of: first.access)["sid"] as? String == claims(of: access2)["sid"] as? String)
            let family = try #require(claims(of: first.access)["sid"] as? String)
            #expect(claims(of: bystander.access)["sid"] as? String != family)
            let revoked = try control.admin("GET", "/v1/revocations?kind=session").json["items"] as? [[String: Any]] ?? []
            #expect(revoked.count == 1)
            #expect(revoked.first?["value"] as? String == family)
            #expect(revoked.allSatisfy { $0["actor"] as? String == "oauth:demo-client" })
            #expect((try control.admin("GET", "/v1/revocations?kind=jti").json["items"] as? [[String: Any]] ?? []).isEmpty)
            let audit = try control.admin("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.contains { $0["action"] as? String == "oauth.refresh_reuse" && $0["target"] as? String == family
                                     && ($0["details"] as? [String: String])?["revocation"] == revoked.first?["id"] as? String })
        }

        @Test("RFC 7009: a revoked access token is introspected inactive as soon as its revocation is answered, and rejected by the gateway; a revoked refresh token dies with its grant's access tokens; either sent again writes nothing more")
        func revocationAndIntrospection() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let basic = ("demo-client", ControlCluster.clientSecret)
            let token = try cluster.clientCredentials()
            #expect(try cluster.statuses(token.access) == [200])

            let active = try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: basic)
            #expect(active.status == 200)
            #expect(active.json["active"] as? Bool == true)
            #expect(active.json["client_id"] as? String == "demo-client")
            #expect(active.json["sub"] as? String == "demo-client")
            #expect(active.json["scope"] as? String == "orders:read orders:write")
            let refreshInfo = try control.oauth("/oauth2/introspect", form: ["token": try #require(token.refresh), "token_type_hint": "refresh_token"], basic: basic)
            #expect(refreshInfo.json["active"] as? Bool == true)
            #expect(refreshInfo.json["token_type"] as? String == "refresh_token")
            #expect(try control.oauth("/oauth2/introspect", form: ["token": "garbage"], basic: basic).json["active"] as? Bool == false)
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access]).status == 401)

            // Another client may not revoke it; unknown tokens are not an error.
            #expect(try control.oauth("/oauth2/revoke", form: ["token": token.access], basic: ("other-client", ControlCluster.otherSecret)).status == 400)
            #expect(try control.oauth("/oauth2/revoke", form: ["token": "unknown-token"], basic: basic).status == 200)
            #expect(try cluster.statuses(token.access) == [200])

            let revoked = try control.oauth("/oauth2/revoke", form: ["token": token.access, "token_type_hint": "access_token"], basic: basic)
            #expect(revoked.status == 200)
            // At once: the revocation's 200 waits for the control plane's own copy (a CI run once
            // caught introspection answering active just after it).
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: basic).json["active"] as? Bool == false)
            try await eventually("the gateway rejects the revoked token") { try cluster.statuses(token.access) == [401] }
            let entries = try control.admin("GET", "/v1/revocations?kind=jti").json["items"] as? [[String: Any]] ?? []
            #expect(entries.first?["value"] as? String == claims(of: token.access)["jti"] as? String)
            #expect(entries.first?["until"] as? Int == claims(of: token.access)["exp"] as? Int)
            // Sent again, it is still 200 and writes nothing more to the signed list.
            for _ in 0..<3 { #expect(try control.oauth("/oauth2/revoke", form: ["token": token.access], basic: basic).status == 200) }
            #expect((try control.admin("GET", "/v1/revocations?kind=jti").json["items"] as? [[String: Any]] ?? []).count == 1)

            // A refresh token: it and the access tokens of its grant go.
            let other = try cluster.clientCredentials()
            let otherRefresh = try #require(other.refresh)
            #expect(try control.oauth("/oauth2/revoke", form: ["token": otherRefresh, "token_type_hint": "refresh_token"], basic: basic).status == 200)
            #expect(try control.oauth("/oauth2/introspect", form: ["token": other.access], basic: basic).json["active"] as? Bool == false)
            // Sent again, it is still 200 and writes nothing more to the signed list.
            #expect(try control.oauth("/oauth2/revoke", form: ["token": otherRefresh, "token_type_hint": "refresh_token"], basic: basic).status == 200)
            #expect((try control.admin("GET", "/v1/revocations?kind=session").json["items"] as? [[String: Any]] ?? []).count == 1)
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": otherRefresh], basic: basic).json["error"] as? String == "invalid_grant")
            #expect(try control.oauth("/oauth2/introspect", form: ["token": otherRefresh], basic: basic).json["active"] as? Bool == false)
            try await eventually("the grant's access token is rejected") { try cluster.statuses(other.access) == [401] }
            let audit = try control.admin("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.filter { $0["action"] as? String == "oauth.revoke" && $0["outcome"] as? String == "ok" }.count == 2)
            #expect(audit.filter { $0["action"] as? String == "oauth.revoke" && $0["outcome"] as? String == "already_revoked" }.count == 4)
            #expect(audit.contains { $0["action"] as? String == "oauth.revoke" && $0["outcome"] as? String == "already_revoked" })

            // A refresh token issued before a cut-off of its subject introspects inactive, as it would not refresh.
            let third = try cluster.clientCredentials()
            let thirdRefresh = try #require(third.refresh)
            #expect(try control.oauth("/oauth2/introspect", form: ["token": thirdRefresh, "token_type_hint": "refresh_token"], basic: basic).json["active"] as? Bool == true)
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"demo-client"}"#).status == 201)
            try await eventually("the cut-off makes the refresh token inactive") {
                try control.oauth("/oauth2/introspect", form: ["token": thirdRefresh, "token_type_hint": "refresh_token"], basic: basic).json["active"] as? Bool == false
            }
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": thirdRefresh], basic: basic).json["error"] as? String == "invalid_grant")
        }

        /// The build before wrote a signed change (and an audit entry) for every RFC 7009 call on
        /// an access token, the same token too, with no limit per client: an attacker review
        /// revoked one token 10 886 times in 20 s and, over minutes, pushed operators' entries out
        /// of the capped audit stream.
        @Test("RFC 7009 revocations of a client are limited to revocations_per_client a minute: beyond it 503 temporarily_unavailable with Retry-After, nothing written and counted; another client is not held back")
        func revocationsPerClientAreLimited() async throws {
            let cluster = try await ControlCluster(asExtra: "  revocations_per_client: 5\n")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let basic = ("demo-client", ControlCluster.clientSecret)
            var statuses: [Int] = []
            for _ in 0..<7 {
                let token = try cluster.clientCredentials()
                let answer = try control.oauth("/oauth2/revoke", form: ["token": token.access], basic: basic)
                statuses.append(answer.status)
                if answer.status == 503 {
                    #expect(answer.json["error"] as? String == "temporarily_unavailable", "\(answer.text)")
                    #expect(Int(answer.header("retry-after") ?? "") ?? 0 >= 1, "\(answer.headers)")
                }
            }
            #expect(statuses == [200, 200, 200, 200, 200, 503, 503])
            #expect((try control.admin("GET", "/v1/revocations?kind=jti").json["items"] as? [[String: Any]] ?? []).count == 5)
            #expect(PrometheusText.sample(try control.admin("GET", "/metrics").text, "portcullis_oauth_revocations_throttled_total") == 2)
            // A token of another client's, and a call that finds no token of the client's, are not held back.
            let other = try cluster.clientCredentials(client: "other-client", secret: ControlCluster.otherSecret)
            #expect(try control.oauth("/oauth2/revoke", form: ["token": other.access], basic: ("other-client", ControlCluster.otherSecret)).status == 200)
            #expect(try control.oauth("/oauth2/revoke", form: ["token": "unknown-token"], basic: basic).status == 200)
        }

        @Test("a real OAuth client library (authlib): client_credentials, refresh, calls through the gateway")
        func authlibClient() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let gateway = try await cluster.startGateway(id: "gw-1")
            guard let result = try runPythonScript("oauth_client.py", [
                "--issuer", cluster.issuer, "--client-id", "demo-client", "--client-secret", ControlCluster.clientSecret,
                "--gateway", "http://127.0.0.1:\(gateway.port)/orders", "--scope", "orders:read orders:write",
            ]) else {
                print("skipped: authlib is not installed (cluster/setup.sh installs it)")
                return
            }
            #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
            #expect(json["metadata_issuer"] as? String == cluster.issuer)
            let basic = json["basic"] as? [String: Any] ?? [:]
            #expect(basic["token_type"] as? String == "Bearer")
            #expect(basic["has_refresh_token"] as? Bool == true)
            #expect(basic["gateway_status"] as? Int == 200)
            let refresh = json["refresh"] as? [String: Any] ?? [:]
            #expect(refresh["rotated"] as? Bool == true)
            #expect(refresh["new_access_token"] as? Bool == true)
            #expect(refresh["gateway_status"] as? Int == 200)
            #expect((json["post"] as? [String: Any])?["gateway_status"] as? Int == 200)
            #expect(json["wrong_secret"] as? String == "invalid_client")
        }
    }
}
