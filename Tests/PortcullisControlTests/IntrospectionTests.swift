import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    /// RFC 7662 §2.1 and §4: the introspection endpoint tells a client about its own tokens only,
    /// unless the client is a resource server allowed to introspect others; `active` has no leeway.
    @Suite("introspection scope")
    struct IntrospectionTests {
        @Test("another client introspecting a token gets exactly what an unknown token gets: {\"active\":false}")
        func foreignTokensLookUnknown() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let owner = ("demo-client", ControlCluster.clientSecret)
            let stranger = ("other-client", ControlCluster.otherSecret)
            let token = try cluster.clientCredentials()
            let refresh = try #require(token.refresh)

            // The owner sees both of its tokens.
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: owner).json["active"] as? Bool == true)
            #expect(try control.oauth("/oauth2/introspect", form: ["token": refresh, "token_type_hint": "refresh_token"], basic: owner)
                .json["active"] as? Bool == true)

            // Another authenticated client learns nothing: the same status and body as a token that does not exist.
            let unknown = try control.oauth("/oauth2/introspect", form: ["token": "no-such-token"], basic: stranger)
            #expect(unknown.status == 200)
            #expect(unknown.json["active"] as? Bool == false && unknown.json.count == 1, "\(unknown.text)")
            for (presented, hint) in [(token.access, "access_token"), (refresh, "refresh_token"), (token.access, ""), (refresh, "")] {
                var form = ["token": presented]
                if !hint.isEmpty { form["token_type_hint"] = hint }
                let foreign = try control.oauth("/oauth2/introspect", form: form, basic: stranger)
                #expect(foreign.status == unknown.status, "hint '\(hint)'")
                #expect(foreign.text == unknown.text, "hint '\(hint)': \(foreign.text)")
            }
            // Looking did not disturb the owner's tokens.
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: owner).json["active"] as? Bool == true)
        }

        @Test("a client configured with introspect_any (a resource server) introspects every client's tokens")
        func resourceServerSeesEveryToken() async throws {
            // A third client, appended to the clients list (4 spaces deep).
            let cluster = try await ControlCluster(
                asExtra: "    - {client_id: orders-api, secret_sha256: \(sha256Hex("rs-secret-91c2")), introspect_any: true}")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let resourceServer = ("orders-api", "rs-secret-91c2")
            let token = try cluster.clientCredentials()
            let refresh = try #require(token.refresh)

            let access = try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: resourceServer)
            #expect(access.json["active"] as? Bool == true)
            #expect(access.json["client_id"] as? String == "demo-client")
            let refreshInfo = try control.oauth("/oauth2/introspect", form: ["token": refresh], basic: resourceServer)
            #expect(refreshInfo.json["active"] as? Bool == true)
            #expect(refreshInfo.json["client_id"] as? String == "demo-client")
            // Without the flag a client still sees only its own.
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: ("other-client", ControlCluster.otherSecret))
                .json["active"] as? Bool == false)
        }

        @Test("a token reports inactive from its exp on: no leeway, though gateways still grant theirs")
        func expiredTokenIsInactive() async throws {
            let cluster = try await ControlCluster(accessTokenTTL: "5s")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let owner = ("demo-client", ControlCluster.clientSecret)
            let token = try cluster.clientCredentials()
            let exp = try #require(claims(of: token.access)["exp"] as? Int)
            #expect(try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: owner).json["active"] as? Bool == true)

            // Wait until exp has passed by a little (well inside the 30 s verification leeway).
            while Date().timeIntervalSince1970 < Double(exp) + 0.2 { try await Task.sleep(for: .milliseconds(100)) }
            let expired = try control.oauth("/oauth2/introspect", form: ["token": token.access], basic: owner)
            #expect(expired.status == 200)
            #expect(expired.json["active"] as? Bool == false)
            #expect(expired.json.count == 1, "\(expired.text)")
        }
    }
}
