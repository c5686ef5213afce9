import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import PortcullisCluster
@testable import PortcullisControl
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// A browser's part in the authorization code flow, over plain HTTP: it keeps the session cookie
/// and reads the forms' hidden fields out of the pages.
final class SignInBrowser {
    static let redirectURI = "http://127.0.0.1:8765/callback"
    static let users = """
    users:
      - username: alice
        password_hash: $scrypt$ln=17,r=8,p=1$YWxpY2Utc2FsdC0xNmJ5dA$SsR3LJsjCNZ6o8l9reWwkDV9NXQ+PLAra2ORzekfvY0
        claims: {roles: [orders-reader, orders-writer], tenant: acme}
      - username: bob
        password_hash: $scrypt$ln=17,r=8,p=1$Ym9iLXNhbHQtMTZieXRlcw$Wt4elqKJKHb9A3mQzCNaXSE6/Fh4QvV6vWHEuPmTMuI
    """
    static let client = "{client_id: web-app, public: true, redirect_uris: [\"\(redirectURI)\", \"https://app.example/cb\"], scopes: [orders:read, orders:write], grant_types: [authorization_code, refresh_token]}"

    /// A cluster with the public client `web-app` and the users alice and bob (and `extraUsers`,
    /// YAML list items).
    static func cluster(throttle: String = "{per_user: 5, per_address: 20, window: 1m}", extraClients: [String] = [],
                        gatewayExtra: String = "", extraUsers: String = "") async throws -> ControlCluster {
        let folder = try TemporaryDirectory.make(prefix: "portcullis-users")
        try (users + "\n" + extraUsers).write(toFile: folder + "/users.yaml", atomically: true, encoding: .utf8)
        return try await ControlCluster(asExtra: "  users_file: \(folder)/users.yaml\n  login_throttle: \(throttle)\n", asClients: [client] + extraClients,
                                        gatewayExtra: gatewayExtra)
    }

    /// The control plane it talks to (any of them: sessions, codes and throttling are in Redis).
    var control: ControlProcess
    var cookie: String?
    let verifier: String
    var challenge: String { Base64URL.encode(Array(SHA256.hash(data: Array(verifier.utf8)))) }

    init(control: ControlProcess) {
        self.control = control
        var generator = SystemRandomNumberGenerator()
        verifier = Base64URL.encode((0..<48).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// The authorization request's parameters (override or remove with `changes`).
    func parameters(_ changes: [String: String?] = [:]) -> [String: String] {
        var params = ["response_type": "code", "client_id": "web-app", "redirect_uri": Self.redirectURI, "scope": "orders:read",
                      "state": "state-\(UUID().uuidString)", "code_challenge": challenge, "code_challenge_method": "S256"]
        for (name, value) in changes { params[name] = value }
        return params
    }

    func get(_ path: String) throws -> HTTPTestResponse {
        try send("GET", path)
    }

    func authorize(_ params: [String: String]) throws -> HTTPTestResponse {
        let query = params.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")
        return try send("GET", "/oauth2/authorize?" + query)
    }

    /// Posts a form (`csrf_token` from `page` unless given) to `path`.
    func post(_ path: String, _ form: [String: String], cookie: String?? = .none) throws -> HTTPTestResponse {
        let body = form.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")
        return try send("POST", path, body: Array(body.utf8), contentType: "application/x-www-form-urlencoded", cookie: cookie)
    }

    private func send(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String? = nil, cookie: String?? = .none) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: control.port, timeout: 30)
        defer { client.close() }
        var headers = [("Connection", "close")]
        if let contentType { headers.append(("Content-Type", contentType)) }
        if let value = cookie ?? self.cookie { headers.append(("Cookie", "portcullis_session=\(value)")) }
        let response = try client.request(method, path, headers: headers, body: body)
        if let set = response.header("set-cookie"), let value = set.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last {
            self.cookie = String(value)
        }
        return response
    }

    /// The hidden fields of the page's form.
    static func hiddenFields(_ page: HTTPTestResponse) -> [String: String] {
        let pattern = try! NSRegularExpression(pattern: #"<input type="hidden" name="([^"]+)" value="([^"]*)">"#)
        let text = page.text
        var fields: [String: String] = [:]
        for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let name = String(text[Range(match.range(at: 1), in: text)!])
            let value = String(text[Range(match.range(at: 2), in: text)!])
            fields[name] = value.replacingOccurrences(of: "&amp;", with: "&").replacingOccurrences(of: "&quot;", with: "\"")
                .replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
        }
        return fields
    }

    /// The query parameters of a redirect's `Location`.
    static func redirectParameters(_ response: HTTPTestResponse) -> [String: String] {
        guard let location = response.header("location"), let components = URLComponents(string: location) else { return [:] }
        return Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { first, _ in first })
    }

    /// Signs in (login page, then consent when asked) and returns the redirect to the client.
    func signIn(username: String = "alice", password: String = "alice-password-1", _ params: [String: String]? = nil) throws -> HTTPTestResponse {
        let params = params ?? parameters()
        let login = try authorize(params)
        guard login.status == 200 else { throw FixtureError("authorize answered \(login.status): \(login.text)") }
        var form = Self.hiddenFields(login)
        form["username"] = username
        form["password"] = password
        let afterLogin = try post("/oauth2/authorize", form)
        guard afterLogin.status == 200, afterLogin.text.contains("Allow access?") else { return afterLogin }
        var consent = Self.hiddenFields(afterLogin)
        consent["decision"] = "allow"
        return try post("/oauth2/consent", consent)
    }

    /// Redeems `code` at the token endpoint as the public client.
    func redeem(_ code: String, verifier: String? = nil, redirectURI: String = SignInBrowser.redirectURI) throws -> HTTPTestResponse {
        try control.oauth("/oauth2/token", form: ["grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI,
                                                   "client_id": "web-app", "code_verifier": verifier ?? self.verifier])
    }
}

extension ControlPlaneTests {
    @Suite("authorization code grant with PKCE, login and consent (RFC 6749 §4.1, RFC 7636, RFC 9700)")
    struct AuthorizationCodeTests {
        @Test("the full code flow: login page, consent, code with state and iss (RFC 9207), PKCE redemption, the user's claims in the token and in the gateway's identity headers; consent is remembered; public refresh tokens rotate with reuse detection (RFC 9700 §4.14.2)")
        func fullCodeFlow() async throws {
            let cluster = try await SignInBrowser.cluster(gatewayExtra: "identity_headers: {sub: X-Auth-Subject, tenant: X-Auth-Tenant, roles: X-Auth-Roles}")
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let browser = SignInBrowser(control: control)

            let metadata = try control.get(port: control.port, "/.well-known/oauth-authorization-server").json
            #expect(metadata["authorization_endpoint"] as? String == cluster.issuer + "/oauth2/authorize")
            #expect(metadata["code_challenge_methods_supported"] as? [String] == ["S256"])
            #expect(metadata["response_types_supported"] as? [String] == ["code"])
            #expect(metadata["authorization_response_iss_parameter_supported"] as? Bool == true)
            #expect((metadata["grant_types_supported"] as? [String])?.contains("authorization_code") == true)
            #expect((metadata["token_endpoint_auth_methods_supported"] as? [String])?.contains("none") == true)

            let params = browser.parameters(["scope": "orders:read orders:write"])
            let login = try browser.authorize(params)
            #expect(login.status == 200)
            #expect(login.header("content-type")?.hasPrefix("text/html") == true)
            let csp = login.header("content-security-policy") ?? ""
            #expect(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "\(csp)")
            #expect(login.header("x-frame-options") == "DENY")
            #expect(login.header("cache-control") == "no-store")
            let cookie = try #require(login.header("set-cookie"))
            #expect(cookie.contains("; Secure") && cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Lax"), "\(cookie)")
            #expect(login.text.contains(#"<label for="username">Username</label>"#) && login.text.contains(#"<label for="password">Password</label>"#))
            let anonymousCookie = browser.cookie

            var form = SignInBrowser.hiddenFields(login)
            #expect(form["csrf_token"]?.isEmpty == false)
            form["username"] = "alice"
            form["password"] = "alice-password-1"
            let consentPage = try browser.post("/oauth2/authorize", form)
            #expect(consentPage.status == 200)
            #expect(consentPage.text.contains("Allow access?") && consentPage.text.contains("<li>orders:write</li>"), "\(consentPage.text)")
            // Signing in replaced the session (and its cookie): the anonymous one is worth nothing now.
            #expect(browser.cookie != anonymousCookie)
            let signedInCookie = browser.cookie
            browser.cookie = anonymousCookie
            let planted = try browser.authorize(browser.parameters())
            #expect(planted.status == 200 && planted.text.contains("<h1>Sign in</h1>"), "the pre-sign-in session must be gone")
            browser.cookie = signedInCookie
            var consent = SignInBrowser.hiddenFields(consentPage)
            consent["decision"] = "allow"
            let redirect = try browser.post("/oauth2/consent", consent)
            #expect(redirect.status == 303)
            #expect(redirect.header("location")?.hasPrefix(SignInBrowser.redirectURI + "?") == true)
            let answer = SignInBrowser.redirectParameters(redirect)
            #expect(answer["state"] == params["state"])
            #expect(answer["iss"] == cluster.issuer)
            let code = try #require(answer["code"])

            let tokens = try browser.redeem(code)
            #expect(tokens.status == 200, "\(tokens.text)")
            #expect(tokens.header("cache-control") == "no-store")
            let access = try #require(tokens.json["access_token"] as? String)
            let payload = claims(of: access)
            #expect(payload["sub"] as? String == "alice")
            #expect(payload["client_id"] as? String == "web-app")
            #expect(payload["scope"] as? String == "orders:read orders:write")
            #expect(payload["roles"] as? [String] == ["orders-reader", "orders-writer"])
            #expect(payload["tenant"] as? String == "acme")
            #expect(payload["auth_time"] is Int)
            #expect(try cluster.statuses(access) == [200])
            // The user's identity reaches the upstream through the gateway's identity headers.
            let echoed = try #require(cluster.gateways.first).request("GET", "/orders", headers: [("Authorization", "Bearer \(access)")]).echoedHeaders
            #expect(echoed["x-auth-subject"] == ["alice"])
            #expect(echoed["x-auth-tenant"] == ["acme"])
            #expect(echoed["x-auth-roles"] == ["orders-reader orders-writer"])

            // Consent is remembered per user and client: the next request goes straight back with a code.
            let again = try browser.authorize(browser.parameters())
            #expect(again.status == 303)
            #expect(SignInBrowser.redirectParameters(again)["code"] != nil)
            // A wider request asks again.
            let wider = try browser.authorize(browser.parameters(["scope": "orders:read orders:write"]))
            #expect(wider.status == 303)

            // Refresh for the public client: rotated, claims kept; the old one coming back kills the family.
            let refresh1 = try #require(tokens.json["refresh_token"] as? String)
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh1, "client_id": "web-app"])
            #expect(refreshed.status == 200, "\(refreshed.text)")
            let access2 = try #require(refreshed.json["access_token"] as? String)
            #expect(claims(of: access2)["tenant"] as? String == "acme")
            #expect(claims(of: access2)["sub"] as? String == "alice")
            let reuse = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh1, "client_id": "web-app"])
            #expect(reuse.json["error"] as? String == "invalid_grant")
            try await eventually("the family's access tokens are revoked") { try cluster.statuses(access2) == [401] && cluster.statuses(access) == [401] }

            let metrics = try control.metrics()
            #expect(metrics.contains(#"portcullis_login_attempts_total{outcome="success"} 1"#))
            #expect(metrics.contains(#"portcullis_oauth_token_requests_total{grant_type="authorization_code",outcome="issued"} 1"#))
            // docs/operations.md documents every metric the control plane exports.
            let operations = try String(contentsOfFile: PortcullisBinary.packageRoot + "/docs/operations.md", encoding: .utf8)
            let names = Set(metrics.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
                line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
            }.map { name in
                ["_bucket", "_sum", "_count"].reduce(name) { $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0 }
            })
            for name in names.sorted() {
                #expect(operations.contains("`" + name), "\(name) is not documented in docs/operations.md")
            }
        }

        @Test("a stock client library (authlib) completes code + PKCE configured from the OpenID Connect discovery document alone, and refreshes")
        func authlibFromDiscovery() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let gateway = try await cluster.startGateway(id: "gw-1")
            let discovery = try cluster.control.get(port: cluster.control.port, "/.well-known/openid-configuration").json
            #expect(discovery["issuer"] as? String == cluster.issuer)
            #expect(discovery["authorization_endpoint"] as? String == cluster.issuer + "/oauth2/authorize")
            #expect(discovery["token_endpoint"] as? String == cluster.issuer + "/oauth2/token")
            #expect(discovery["code_challenge_methods_supported"] as? [String] == ["S256"])
            #expect(discovery["subject_types_supported"] as? [String] == ["public"])
            guard let run = try runPythonScript("oauth_code_flow.py", [cluster.issuer, "web-app", SignInBrowser.redirectURI, "alice",
                                                                       "alice-password-1", "http://127.0.0.1:\(gateway.port)/orders"]) else {
                print("skipped: authlib is not installed (cluster/setup.sh installs it)")
                return
            }
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
            #expect(json["issuer"] as? String == cluster.issuer)
            #expect(json["redirected_to_client"] as? Bool == true)
            #expect(json["token_type"] as? String == "Bearer")
            #expect(json["has_refresh_token"] as? Bool == true)
            #expect(json["gateway_status"] as? Int == 200)
            #expect(json["refresh_rotated"] as? Bool == true)
        }

        @Test("two control planes share sign-in sessions, codes and login throttling through Redis: a code issued by one is redeemed at the other, once")
        func twoControlPlanes() async throws {
            let cluster = try await SignInBrowser.cluster(throttle: "{per_user: 1, per_address: 20, window: 1m}")
            defer { Task { await cluster.shutdown() } }
            let first = cluster.control
            let folder = try TemporaryDirectory.make(prefix: "portcullis-users")
            try SignInBrowser.users.write(toFile: folder + "/users.yaml", atomically: true, encoding: .utf8)
            let second = try await cluster.startPeerControl(
                asExtra: "  users_file: \(folder)/users.yaml\n  login_throttle: {per_user: 1, per_address: 20, window: 1m}\n", asClients: [SignInBrowser.client])
            defer { Task { await second.stop() } }

            // The login page from the first, the login form to the second, the code back to the first.
            let browser = SignInBrowser(control: first)
            var form = SignInBrowser.hiddenFields(try browser.authorize(browser.parameters()))
            form["username"] = "alice"
            form["password"] = "alice-password-1"
            browser.control = second
            let consentPage = try browser.post("/oauth2/authorize", form)
            #expect(consentPage.status == 200, "\(consentPage.text)")
            var consent = SignInBrowser.hiddenFields(consentPage)
            consent["decision"] = "allow"
            browser.control = first
            let code = try #require(SignInBrowser.redirectParameters(try browser.post("/oauth2/consent", consent))["code"])
            browser.control = second
            #expect(try browser.redeem(code).status == 200)
            browser.control = first
            #expect(try browser.redeem(code).json["error"] as? String == "invalid_grant")

            // One failure for bob at the first locks him at the second.
            let guesser = SignInBrowser(control: first)
            #expect(try guesser.signIn(username: "bob", password: "guess").status == 403)
            guesser.control = second
            #expect(try guesser.signIn(username: "bob", password: "bob-password-2").status == 429)
        }

        /// The first build of grant cut-offs wrote one for any client_id the form named (control
        /// characters included) and for any number of presses: one user grew the never-pruned
        /// revocation list by 1 800 entries in a minute, 237 MB in Redis, and a gateway restarted
        /// after it needed 10 s and 1.15 GB to sync (an attacker review).
        @Test("Revoke access writes a grant cut-off only for a registered client, superseding the user's own earlier ones for that client (never an operator's), and is throttled: an unknown client_id is a 400 that writes nothing, later presses leave one of the user's grants in force, the 31st press in an hour is a 429")
        func revokeAccessIsBounded() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            _ = try browser.signIn()
            func logLength() throws -> Int { Int(try cluster.redis.cli("ZCARD", "portcullis:rev:log")) ?? -1 }
            func grantsInForce() throws -> Int? {
                ((try control.admin("GET", "/v1/status").json["revocations"] as? [String: Any])?["in_force"] as? [String: Any])?["grant"] as? Int
            }
            func press(_ clientID: String) throws -> HTTPTestResponse {
                let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])
                return try browser.post("/oauth2/account", ["action": "revoke", "client_id": clientID, "csrf_token": csrf])
            }
            let before = try logLength()
            for unknown in ["not-registered", "web\u{0}app", "evil\nline", "\u{1B}[31mred"] {
                let refused = try press(unknown)
                #expect(refused.status == 400 && refused.text.contains("No application is registered"), "\(refused.status) \(refused.text)")
            }
            #expect(try logLength() == before, "an unknown client_id wrote to the revocation list")

            // Consent given at sign-in, revoked: one grant (applied by the control plane before it answers).
            #expect(try press("web-app").status == 200)
            #expect(try grantsInForce() == 1)
            let grants = try control.admin("GET", "/v1/revocations?kind=grant").json["items"] as? [[String: Any]] ?? []
            let first = try #require(grants.first { $0["operation"] as? String == "add" }?["id"] as? String)
            // Pressed again — with no consent left, as a Redis writer who took it away would leave
            // it — and after a new consent: each press writes a grant that lifts the one before.
            #expect(try press("web-app").status == 200)
            try await Task.sleep(for: .milliseconds(1100))
            _ = try browser.signIn()
            #expect(try press("web-app").status == 200)
            #expect(try grantsInForce() == 1, "each new grant supersedes the user's earlier one")
            let changes = try control.admin("GET", "/v1/revocations?kind=grant").json["items"] as? [[String: Any]] ?? []
            #expect(changes.filter { $0["operation"] as? String == "add" }.count == 3, "\(changes)")
            #expect(changes.contains { $0["operation"] as? String == "delete" && $0["lifts"] as? String == first }, "\(changes)")
            // An operator's grant for the same user and client, with a later cut-off, is never lifted by a press.
            let operatorGrant = try control.admin("POST", "/v1/revocations", json: #"{"kind":"grant","value":"alice","client":"web-app","issuer":"\#(control.issuer)","before":"2030-01-01T00:00:00Z"}"#)
            #expect(operatorGrant.status == 201, "\(operatorGrant.text)")
            let operatorID = try #require(operatorGrant.json["id"] as? String)
            #expect(try press("web-app").status == 200)
            let afterOperator = try control.admin("GET", "/v1/revocations?kind=grant").json["items"] as? [[String: Any]] ?? []
            #expect(!afterOperator.contains { $0["lifts"] as? String == operatorID }, "a user's press lifted the operator's grant")

            // Presses beyond 30 in an hour are refused (the four for web-app above counted; those
            // for unknown clients did not get that far).
            var statuses: [Int] = []
            for _ in 0..<27 { statuses.append(try press("web-app").status) }
            #expect(statuses.filter { $0 == 429 }.count == 1 && statuses.last == 429, "\(statuses)")
        }

        @Test("a signed-in user re-posting the consent form again and again writes at most 10 audit entries and then one per 6 s, and so does a client redeeming codes twice in a loop; the rest are counted, and another user's sign-in is audited all the same")
        func usersOwnEntriesAreRateLimited() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            let login = try browser.authorize(browser.parameters())
            var form = SignInBrowser.hiddenFields(login)
            form["username"] = "alice"
            form["password"] = "alice-password-1"
            let consentPage = try browser.post("/oauth2/authorize", form)
            #expect(consentPage.text.contains("Allow access?"))
            var consent = SignInBrowser.hiddenFields(consentPage)
            consent["decision"] = "allow"
            let started = ContinuousClock.now
            let posts = 60
            var codes: [String] = []
            for _ in 0..<posts {
                let answer = try browser.post("/oauth2/consent", consent)
                #expect(answer.status == 303)
                if let code = SignInBrowser.redirectParameters(answer)["code"] { codes.append(code) }
            }
            let elapsed = Int((ContinuousClock.now - started).components.seconds) + 1
            #expect(try SignInBrowser(control: control).signIn(username: "bob", password: "bob-password-2").status == 303)
            let entries = try control.admin("GET", "/v1/audit?count=1000").json["entries"] as? [[String: Any]] ?? []
            // alice's sign-in and her consents share her bucket.
            let alice = entries.filter { $0["actor"] as? String == "user:alice" }
            #expect(alice.count >= 10 && alice.count <= 10 + elapsed / 6 + 1, "\(alice.count) entries after \(elapsed) s")
            #expect(alice.contains { ($0["details"] as? [String: String])?["suppressed_before"] != nil } || alice.count == 10)
            #expect(entries.contains { $0["action"] as? String == "oauth.login" && $0["actor"] as? String == "user:bob" })
            #expect(try control.metrics().contains("portcullis_admin_audit_suppressed_total \(posts + 1 - alice.count)"))

            // Each code redeemed, then presented again: a reuse, which revokes what it issued and
            // is audited at the client's rate.
            let reuses = 20
            let reuseStarted = ContinuousClock.now
            for code in codes.prefix(reuses) {
                #expect(try browser.redeem(code).status == 200)
                #expect(try browser.redeem(code).status == 400)
            }
            let reuseElapsed = Int((ContinuousClock.now - reuseStarted).components.seconds) + 1
            let after = try control.admin("GET", "/v1/audit?count=1000").json["entries"] as? [[String: Any]] ?? []
            let reused = after.filter { $0["action"] as? String == "oauth.code_reuse" }
            #expect(codes.count >= reuses && reused.count >= 10 && reused.count <= 10 + reuseElapsed / 6 + 1,
                    "\(reused.count) reuse entries after \(reuseElapsed) s")
            let metrics = try control.metrics()
            #expect(metrics.contains("portcullis_authorization_code_reuse_total \(reuses)"))
            #expect(metrics.contains("portcullis_admin_audit_suppressed_total \(posts + 1 - alice.count + reuses - reused.count)"), "\(metrics)")
        }

        @Test("consent is revocable on the account page: revoking it revokes every token issued under it, cluster-wide, and the next sign-in asks again; sign-out ends the session")
        func consentRevocationAndSignOut() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let tokens = try browser.redeem(code)
            let access = try #require(tokens.json["access_token"] as? String)
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app",
                                                                      "refresh_token": try #require(tokens.json["refresh_token"] as? String)])
            let access2 = try #require(refreshed.json["access_token"] as? String)
            let refresh2 = try #require(refreshed.json["refresh_token"] as? String)
            let bystander = try cluster.clientCredentials()
            #expect(try cluster.statuses(access2) == [200, 200])

            let page = try browser.get("/oauth2/account")
            #expect(page.status == 200)
            #expect(page.text.contains("web-app (orders:read)"), "\(page.text)")
            let csrf = try #require(SignInBrowser.hiddenFields(page)["csrf_token"])
            // Without the CSRF token nothing happens.
            #expect(try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app"]).status == 403)
            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200)
            #expect(revoked.text.contains("Access for web-app revoked: its tokens are refused from now on."), "\(revoked.text)")
            #expect(!revoked.text.contains("web-app (orders:read)"))
            try await eventually("every token issued under the consent is revoked on every gateway") {
                try cluster.statuses(access) == [401, 401] && cluster.statuses(access2) == [401, 401]
            }
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh2])
                .json["error"] as? String == "invalid_grant")
            #expect(try cluster.statuses(bystander.access) == [200, 200])
            // Still signed in, but consent must be given again.
            let again = try browser.authorize(browser.parameters())
            #expect(again.status == 200 && again.text.contains("Allow access?"))

            let sessionCookie = browser.cookie
            let signedOut = try browser.post("/oauth2/account", ["action": "logout", "csrf_token": csrf])
            #expect(signedOut.status == 200 && signedOut.text.contains("You are signed out."))
            #expect(signedOut.header("set-cookie")?.contains("Max-Age=0") == true)
            // The session is gone on the server: a copy of the old cookie signs in no one.
            browser.cookie = sessionCookie
            let afterwards = try browser.authorize(browser.parameters())
            #expect(afterwards.status == 200 && afterwards.text.contains("<h1>Sign in</h1>"))
            let audit = try control.admin("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.contains { $0["action"] as? String == "oauth.consent_revoke" && $0["actor"] as? String == "user:alice" })
            #expect(audit.contains { $0["action"] as? String == "oauth.logout" })
        }

        /// The build before escaped page values per Character (swift-mustache's escaping): a
        /// quote followed by a zero-width joiner is one Character, not a quote, so a crafted
        /// `state` closed the hidden field and the form, and a form of the attacker's took the
        /// password when the user pressed the real "Sign in" (an attacker review, in Chromium).
        @Test("a crafted state with quotes and angle brackets joined to zero-width joiners stays inside its hidden field on the sign-in page")
        func craftedStateStaysInItsField() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            // Each quote and angle bracket is joined to a neighbour: a zero-width joiner after it,
            // or a prepended mark (U+0600) before a `<`, so that each is a Character of its own.
            let payload = "x\"\u{200D}>\u{200D}\u{0600}</form>\u{200D}\u{0600}<form action=\"\u{200D}https://evil.example/steal\"\u{200D}>\u{200D}"
            let page = try browser.authorize(browser.parameters(["state": payload]))
            #expect(page.status == 200 && page.text.contains("<h1>Sign in</h1>"))
            #expect(page.text.components(separatedBy: "<form").count == 2, "one form, the page's own: \(page.text)")
            #expect(!page.text.contains("evil.example/steal\""), "\(page.text)")
            #expect(page.text.contains("x&quot;\u{200D}&gt;\u{200D}\u{0600}&lt;/form&gt;"), "\(page.text)")
        }

        /// The build before took the first of the session cookies a request carried: a page of the
        /// same site (a sibling subdomain with `Domain=`) planting an attacker's signed-in session
        /// under a more specific path had the victim sent back to the client signed in as the
        /// attacker (login CSRF; an attacker review, with a real browser).
        @Test("a request carrying two session cookies — the user's and one planted for a more specific path — is treated as signed in as nobody: the login page, no code")
        func plantedSessionCookieSignsInNobody() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let attacker = SignInBrowser(control: cluster.control)
            _ = try attacker.signIn(username: "bob", password: "bob-password-2")
            let victim = SignInBrowser(control: cluster.control)
            _ = try victim.signIn()
            let attackerSession = try #require(attacker.cookie), victimSession = try #require(victim.cookie)
            // A browser sends the more specific path's cookie first.
            victim.cookie = attackerSession + "; portcullis_session=" + victimSession
            let answer = try victim.authorize(victim.parameters())
            #expect(answer.status == 200 && answer.text.contains("<h1>Sign in</h1>"), "\(answer.status) \(answer.header("location") ?? "")")
            #expect(SignInBrowser.redirectParameters(answer)["code"] == nil)
        }

        /// The build before checked cut-offs only at the gateways, against access tokens: after
        /// "revoke every token of alice" a refresh token issued before it went on minting tokens
        /// that passed, and the old sign-in session got new codes without a password (an attacker
        /// review).
        @Test("a subject cut-off ends what outlives an access token too: a refresh token issued before it refreshes nothing, a sign-in session begun before it signs in no one; a client cut-off ends the client's refresh tokens")
        func cutoffEndsRefreshTokensAndSessions() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let refresh = try #require(try browser.redeem(code).json["refresh_token"] as? String)
            let revoked = try control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"subject","value":"alice","reason":"account compromised"}"#)
            #expect(revoked.status == 201, "\(revoked.text)")
            try await Task.sleep(for: .milliseconds(300))  // the control plane's copy of the list
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh])
            #expect(refreshed.status == 400 && refreshed.json["error"] as? String == "invalid_grant", "\(refreshed.text)")
            #expect(refreshed.json["access_token"] == nil)
            // The session begun before the cut-off: the login page, no code.
            let again = try browser.authorize(browser.parameters())
            #expect(again.status == 200 && again.text.contains("<h1>Sign in</h1>"), "\(again.status) \(again.header("location") ?? "")")
            #expect(SignInBrowser.redirectParameters(again)["code"] == nil)

            // Signed in again after the cut-off (a later second): works as before.
            try await Task.sleep(for: .milliseconds(1100))
            let fresh = SignInBrowser(control: control)
            let code2 = try #require(SignInBrowser.redirectParameters(try fresh.signIn())["code"])
            let tokens2 = try fresh.redeem(code2)
            let refresh2 = try #require(tokens2.json["refresh_token"] as? String)
            // A client cut-off ends the client's refresh tokens issued before it.
            #expect(try control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"client","value":"web-app"}"#).status == 201)
            try await Task.sleep(for: .milliseconds(300))
            let clientCut = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh2])
            #expect(clientCut.status == 400 && clientCut.json["error"] as? String == "invalid_grant", "\(clientCut.text)")
            // A code issued after the client cut-off, from the session signed in before it, redeems.
            try await Task.sleep(for: .milliseconds(1100))
            let code3 = try #require(SignInBrowser.redirectParameters(try fresh.authorize(fresh.parameters()))["code"])
            let tokens3 = try fresh.redeem(code3)
            #expect(tokens3.status == 200, "\(tokens3.text)")
        }

        /// The build before held a cut-off against the presented refresh token's issue: a refresh
        /// in flight while an operator wrote "log out everywhere" handed out a successor stamped
        /// after the cut-off, and that family went on refreshing for its whole lifetime (an
        /// attacker review: 3 of 6 runs of one stolen token refreshed in a loop). The cut-offs
        /// here are dated between the grant's start and its latest refresh: the state that race
        /// leaves, made without the race.
        @Test("a cut-off ends the grants begun before it however recently their refresh tokens were issued: a subject cut-off after the user's sign-in, a client cut-off after the code's issue, each dated before the family's latest refresh, make that refresh token refresh nothing; a refreshed access token keeps the sign-in's auth_time")
        func cutoffEndsGrantsBegunBeforeIt() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            func refresh(_ token: String) throws -> HTTPTestResponse {
                try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": token])
            }
            // Two grants, alice's and bob's, each refreshed once more than a second after it began.
            var latest: [String: String] = [:]
            var cutAt: [String: Double] = [:]
            var authTime: Int?
            for (user, password) in [("alice", "alice-password-1"), ("bob", "bob-password-2")] {
                let browser = SignInBrowser(control: control)
                let code = try #require(SignInBrowser.redirectParameters(try browser.signIn(username: user, password: password))["code"])
                let redeemed = try browser.redeem(code)
                let first = try #require(redeemed.json["refresh_token"] as? String, "\(redeemed.text)")
                if user == "alice" { authTime = claims(of: try #require(redeemed.json["access_token"] as? String))["auth_time"] as? Int }
                try await Task.sleep(for: .milliseconds(1100))
                cutAt[user] = Date().timeIntervalSince1970
                let refreshed = try refresh(first)
                #expect(refreshed.status == 200, "\(refreshed.text)")
                latest[user] = try #require(refreshed.json["refresh_token"] as? String)
                if user == "alice" {
                    let access = try #require(refreshed.json["access_token"] as? String)
                    #expect(authTime != nil && claims(of: access)["auth_time"] as? Int == authTime, "\(claims(of: access))")
                }
            }
            // alice: a subject cut-off after her sign-in; then bob: a client cut-off after his code.
            for (user, cut) in [("alice", #"{"kind":"subject","value":"alice","before":\#(try #require(cutAt["alice"]))}"#),
                                ("bob", #"{"kind":"client","value":"web-app","before":\#(try #require(cutAt["bob"]))}"#)] {
                let written = try control.admin("POST", "/v1/revocations?wait=5s", json: cut)
                #expect(written.status == 201, "\(written.text)")
                try await Task.sleep(for: .milliseconds(300))  // the control plane's copy of the list
                let after = try refresh(try #require(latest[user]))
                #expect(after.status == 400 && after.json["error"] as? String == "invalid_grant", "\(user): \(after.status) \(after.text)")
                #expect(after.json["access_token"] == nil)
            }
        }

        /// The build before revoked only what had been issued: a code the client held unredeemed
        /// still redeemed after "Revoke access", for tokens (and a refresh token family) the
        /// account page no longer listed (an attacker review).
        @Test("a code issued before the user revoked the client's access redeems nothing afterwards: invalid_grant")
        func codeOutstandingAtConsentRevocation() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let first = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            #expect(try browser.redeem(first).status == 200)
            // Consent remembered: a second authorization gets a code at once, left unredeemed.
            let outstanding = try #require(SignInBrowser.redirectParameters(try browser.authorize(browser.parameters()))["code"])
            let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])
            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200 && revoked.text.contains("Access for web-app revoked"), "\(revoked.text)")
            let late = try browser.redeem(outstanding)
            #expect(late.status == 400 && late.json["error"] as? String == "invalid_grant", "\(late.text)")
            #expect(late.json["access_token"] == nil)
        }

        /// The build before forgot the consent and the list of what was issued under it in its
        /// first step, then failed on the next write: the retry revoked nothing ("revoked (0
        /// tokens)") and the application's tokens kept working (an attacker review).
        @Test("revoking consent while Redis refuses writes (out of memory) fails with 503 and loses nothing: tried again once Redis takes writes, it revokes every token issued under the consent")
        func consentRevocationSurvivesRefusedWrites() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let control = cluster.control
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let tokens = try browser.redeem(code)
            let access = try #require(tokens.json["access_token"] as? String)
            let refresh = try #require(tokens.json["refresh_token"] as? String)
            #expect(try cluster.statuses(access) == [200])
            let csrf = try #require(SignInBrowser.hiddenFields(try browser.get("/oauth2/account"))["csrf_token"])

            try cluster.redis.cli("CONFIG", "SET", "maxmemory", "1")
            let refused = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            try cluster.redis.cli("CONFIG", "SET", "maxmemory", "0")
            #expect(refused.status == 503, "\(refused.status) \(refused.text)")

            let revoked = try browser.post("/oauth2/account", ["action": "revoke", "client_id": "web-app", "csrf_token": csrf])
            #expect(revoked.status == 200)
            #expect(revoked.text.contains("Access for web-app revoked: its tokens are refused from now on."), "\(revoked.text)")
            try await eventually("the access token issued under the consent is revoked") { try cluster.statuses(access) == [401] }
            #expect(try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "client_id": "web-app", "refresh_token": refresh])
                .json["error"] as? String == "invalid_grant")
            // The retry revoked the family's session too.
            let sessions = (try control.admin("GET", "/v1/revocations?kind=session").json["items"] as? [[String: Any]] ?? []).compactMap { $0["value"] as? String }
            #expect(sessions == [try #require(claims(of: access)["sid"] as? String)], "\(sessions)")
        }

        @Test("RFC 9700 §4.2.4 (RFC 6749 §4.1.2): an authorization code works once; a reused code revokes every token issued from it, once: presented again it writes nothing more")
        func rfc9700Section4_2_4ReusedCode() async throws {
            let cluster = try await SignInBrowser.cluster(extraClients: ["{client_id: other-app, public: true, redirect_uris: [\"\(SignInBrowser.redirectURI)\"]}"])
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let browser = SignInBrowser(control: cluster.control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let first = try browser.redeem(code)
            #expect(first.status == 200, "\(first.text)")
            let access = try #require(first.json["access_token"] as? String)
            let refresh = try #require(first.json["refresh_token"] as? String)
            #expect(try cluster.statuses(access) == [200])

            // Another client presenting the used code learns nothing and revokes nothing.
            let foreign = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "authorization_code", "code": code, "client_id": "other-app",
                                                                          "redirect_uri": SignInBrowser.redirectURI, "code_verifier": browser.verifier])
            #expect(foreign.json["error"] as? String == "invalid_grant")
            #expect((foreign.json["error_description"] as? String)?.contains("revoked") == false)
            #expect(try cluster.statuses(access) == [200])

            let second = try browser.redeem(code)
            #expect(second.status == 400)
            #expect(second.json["error"] as? String == "invalid_grant")
            #expect((second.json["error_description"] as? String)?.contains("revoked") == true)
            try await eventually("the access token issued from the reused code is revoked") { try cluster.statuses(access) == [401] }
            let refreshed = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": refresh, "client_id": "web-app"])
            #expect(refreshed.json["error"] as? String == "invalid_grant")
            #expect(try cluster.control.metrics().contains("portcullis_authorization_code_reuse_total 1"))
            let audit = try cluster.control.admin("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.contains { $0["action"] as? String == "oauth.code_reuse" })
            #expect(audit.contains { $0["action"] as? String == "oauth.login" && $0["actor"] as? String == "user:alice" })
            // Presented again and again, it is refused each time and writes nothing more (the build
            // before wrote a session revocation and an audit entry for each: a bypass review
            // made 238 a second from one code).
            for _ in 0..<5 { #expect(try browser.redeem(code).json["error"] as? String == "invalid_grant") }
            #expect((try cluster.control.admin("GET", "/v1/revocations?kind=session").json["items"] as? [[String: Any]] ?? []).count == 1)
            let later = try cluster.control.admin("GET", "/v1/audit").json["entries"] as? [[String: Any]] ?? []
            #expect(later.filter { $0["action"] as? String == "oauth.code_reuse" }.count == 1)
            #expect(try cluster.control.metrics().contains("portcullis_authorization_code_reuse_total 6"))

            // An unknown code, a code for another redirect URI (RFC 9700 §4.1, RFC 6749 §4.1.3).
            #expect(try browser.redeem("no-such-code").json["error"] as? String == "invalid_grant")
            let again = try browser.authorize(browser.parameters())
            let code2 = try #require(SignInBrowser.redirectParameters(again)["code"])
            let mismatch = try browser.redeem(code2, redirectURI: "https://app.example/cb")
            #expect(mismatch.json["error"] as? String == "invalid_grant")
            #expect((mismatch.json["error_description"] as? String)?.contains("redirect_uri") == true)
        }

        @Test("RFC 9700 §2.1.1 (RFC 7636): PKCE S256 is required; a wrong code_verifier is refused and spends the code; plain is refused")
        func rfc9700Section2_1_1PKCE() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            let other = SignInBrowser(control: cluster.control).verifier
            let wrong = try browser.redeem(code, verifier: other)
            #expect(wrong.status == 400)
            #expect(wrong.json["error"] as? String == "invalid_grant")
            #expect((wrong.json["error_description"] as? String)?.contains("code_verifier") == true)
            #expect(try browser.redeem(code).json["error"] as? String == "invalid_grant")
            let missing = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "authorization_code", "code": "x", "client_id": "web-app",
                                                                           "redirect_uri": SignInBrowser.redirectURI])
            #expect(missing.json["error"] as? String == "invalid_request")

            for changes: [String: String?] in [["code_challenge_method": "plain", "code_challenge": browser.verifier],
                                               ["code_challenge_method": nil], ["code_challenge": nil]] {
                let params = browser.parameters(changes)
                let refused = try browser.authorize(params)
                #expect(refused.status == 303, "\(changes)")
                let answer = SignInBrowser.redirectParameters(refused)
                #expect(answer["error"] == "invalid_request", "\(changes)")
                #expect(answer["code"] == nil)
                #expect(answer["state"] == params["state"])
                #expect(answer["iss"] == cluster.issuer)
            }
        }

        /// Swift's `==` compares by canonical equivalence: the build before took a KELVIN SIGN
        /// for the registered `K` — a redirect URI nobody registered got the code, a client id so
        /// spelled found the client, a scope so spelled was granted in that spelling — and echoed
        /// the requested scope, markup and line breaks included, into the redirect's
        /// error_description (an attacker review).
        @Test("client ids, redirect URIs and scopes are compared byte for byte: a canonically equivalent spelling (a KELVIN SIGN for K) finds no client, redirect URI or scope; an error description quoting the request carries only RFC 6749's characters")
        func namesCompareByteForByte() async throws {
            let registered = "http://127.0.0.1:8765/OK/cb"
            let cluster = try await SignInBrowser.cluster(extraClients: [
                "{client_id: Kiosk, public: true, redirect_uris: [\"\(registered)\"], scopes: [Kafka:read], grant_types: [authorization_code]}",
            ])
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let exact: [String: String?] = ["client_id": "Kiosk", "redirect_uri": registered, "scope": "Kafka:read"]
            #expect(try browser.authorize(browser.parameters(exact)).status == 200, "the registered spelling")
            var client = exact
            client["client_id"] = "\u{212A}iosk"
            let noClient = try browser.authorize(browser.parameters(client))
            #expect(noClient.status == 400 && noClient.header("location") == nil, "\(noClient.status)")
            var uri = exact
            uri["redirect_uri"] = "http://127.0.0.1:8765/O\u{212A}/cb"
            let noRedirect = try browser.authorize(browser.parameters(uri))
            #expect(noRedirect.status == 400 && noRedirect.header("location") == nil, "\(noRedirect.status) \(noRedirect.header("location") ?? "")")
            var scope = exact
            scope["scope"] = "\u{212A}afka:read"
            let noScope = SignInBrowser.redirectParameters(try browser.authorize(browser.parameters(scope)))
            #expect(noScope["error"] == "invalid_scope", "\(noScope)")
            scope["scope"] = "<script>\"x\u{202E}\r\n"
            let quoted = SignInBrowser.redirectParameters(try browser.authorize(browser.parameters(scope)))
            #expect(quoted["error"] == "invalid_scope", "\(quoted)")
            let description = quoted["error_description"] ?? ""
            #expect(description.contains("'?script??x???'"), "\(description)")
            #expect(description.unicodeScalars.allSatisfy { (0x20...0x7E).contains($0.value) && !"\"\\<>&`".unicodeScalars.contains($0) }, "\(description)")
        }

        @Test("RFC 9700 §2.1 and §4.1: redirect URIs match exactly, and a mismatch gets an error page, never a redirect; state is required; response_mode only query; no implicit (§2.1.2) or password (§2.4) grant")
        func rfc9700Section2_1RedirectURIAndState() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            for uri in [SignInBrowser.redirectURI + "/x", SignInBrowser.redirectURI + "?a=1", "http://127.0.0.1:8766/callback",
                        "HTTP://127.0.0.1:8765/callback", "https://evil.example/cb"] {
                let refused = try browser.authorize(browser.parameters(["redirect_uri": uri]))
                #expect(refused.status == 400, "\(uri)")
                #expect(refused.header("location") == nil, "\(uri)")
                #expect(refused.text.contains("not registered"), "\(uri)")
            }
            let noRedirect = try browser.authorize(browser.parameters(["redirect_uri": nil]))
            #expect(noRedirect.status == 400 && noRedirect.header("location") == nil)
            let unknownClient = try browser.authorize(browser.parameters(["client_id": "ghost"]))
            #expect(unknownClient.status == 400 && unknownClient.header("location") == nil)
            #expect(unknownClient.text.contains("not registered"))
            // A confidential client without authorization_code cannot start a sign-in.
            #expect(try browser.authorize(browser.parameters(["client_id": "demo-client"])).status == 400)

            let noState = try browser.authorize(browser.parameters(["state": nil]))
            #expect(noState.status == 303)
            #expect(SignInBrowser.redirectParameters(noState)["error"] == "invalid_request")
            #expect(SignInBrowser.redirectParameters(noState)["error_description"]?.contains("state") == true)

            // A code asked for in a fragment or a form post is refused, not sent in the query.
            for mode in ["fragment", "form_post"] {
                let refused = try browser.authorize(browser.parameters(["response_mode": mode]))
                #expect(SignInBrowser.redirectParameters(refused)["error"] == "invalid_request", "\(mode)")
                #expect(SignInBrowser.redirectParameters(refused)["error_description"]?.contains("response_mode") == true, "\(mode)")
            }
            #expect(try browser.authorize(browser.parameters(["response_mode": "query"])).status == 200)

            let implicit = try browser.authorize(browser.parameters(["response_type": "token"]))
            #expect(SignInBrowser.redirectParameters(implicit)["error"] == "unsupported_response_type")
            #expect(SignInBrowser.redirectParameters(implicit)["access_token"] == nil)
            let password = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "password", "username": "alice",
                                                                            "password": "alice-password-1", "client_id": "web-app"])
            #expect(password.json["error"] as? String == "unsupported_grant_type")
            // A public client has no credentials for client_credentials.
            let credentials = try cluster.control.oauth("/oauth2/token", form: ["grant_type": "client_credentials", "client_id": "web-app"])
            #expect(credentials.json["error"] as? String == "unauthorized_client")
        }

        @Test("CSRF: login and consent forms without the session's CSRF token, or without the session cookie, are refused with a page; with Redis away the pages answer 503 and ask to retry")
        func csrfRejection() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let login = try browser.authorize(browser.parameters())
            var form = SignInBrowser.hiddenFields(login)
            form["username"] = "alice"
            form["password"] = "alice-password-1"
            let victimCookie = browser.cookie

            var noToken = form
            noToken["csrf_token"] = nil
            var wrongToken = form
            wrongToken["csrf_token"] = "forged"
            // The attacker's own session and token, posted with the victim's cookie.
            let attacker = SignInBrowser(control: cluster.control)
            var foreign = form
            foreign["csrf_token"] = SignInBrowser.hiddenFields(try attacker.authorize(attacker.parameters()))["csrf_token"]
            for (name, attempt, cookie) in [("no token", noToken, victimCookie), ("wrong token", wrongToken, victimCookie),
                                            ("another session's token", foreign, victimCookie), ("no cookie", form, nil)] {
                for path in ["/oauth2/authorize", "/oauth2/consent"] {
                    let refused = try browser.post(path, attempt, cookie: .some(cookie))
                    #expect(refused.status == 403, "\(name) \(path)")
                    #expect(refused.text.contains("Form expired"), "\(name) \(path)")
                    #expect(refused.header("content-security-policy")?.contains("frame-ancestors 'none'") == true)
                }
            }
            // No password was checked for any of them.
            #expect(!(try cluster.control.metrics().contains("portcullis_login_attempts_total")))

            // Redis away: the login page needs none of it (the form's session is its cookie), and
            // signing in is refused with a request to retry, not an internal error.
            cluster.redis.suspend()
            defer { cluster.redis.resume() }
            let page = try browser.authorize(browser.parameters())
            #expect(page.status == 200)
            var retry = SignInBrowser.hiddenFields(page)
            retry["username"] = "alice"
            retry["password"] = "alice-password-1"
            let unavailable = try browser.post("/oauth2/authorize", retry)
            #expect(unavailable.status == 503)
            #expect(unavailable.header("retry-after") == "1")
            #expect(unavailable.text.contains("Try again in a moment"))
        }

        @Test("visitors who sign nobody in write nothing to Redis (each visit used to store a 10-minute session); a sign-in form is accepted for 10 minutes and only with the MAC of its own cookie")
        func anonymousVisitsWriteNothing() async throws {
            let cluster = try await SignInBrowser.cluster()
            defer { Task { await cluster.shutdown() } }
            for _ in 0..<200 {
                let visitor = SignInBrowser(control: cluster.control)
                #expect(try visitor.authorize(visitor.parameters()).status == 200)
            }
            #expect(try cluster.redis.cli("KEYS", "portcullis:as:session:*").isEmpty, "the login page stored sessions")

            // A form whose cookie was made 11 minutes ago, with the right MAC, is refused; one of a minute ago signs in.
            let mac = LoginSessionStore.formMAC(secret: ControlCluster.secret, cluster: "portcullis:")
            func cookie(age: TimeInterval) -> (id: String, csrf: String) {
                let id = Base64URL.encode([UInt8](repeating: 7, count: 32)) + "." + String(Int64(Date().timeIntervalSince1970 - age))
                return (id, mac.sign(["form1", "", id]))
            }
            let browser = SignInBrowser(control: cluster.control)
            var form = SignInBrowser.hiddenFields(try browser.authorize(browser.parameters()))
            form["username"] = "alice"
            form["password"] = "alice-password-1"
            for (age, accepted) in [(660.0, false), (60.0, true)] {
                let made = cookie(age: age)
                form["csrf_token"] = made.csrf
                let response = try browser.post("/oauth2/authorize", form, cookie: .some(made.id))
                #expect((response.status == 403 && response.text.contains("Form expired")) == !accepted, "\(age) s: \(response.status)")
            }
            #expect(try cluster.redis.cli("KEYS", "portcullis:as:session:*").split(separator: "\n").count == 1, "the sign-in made one session")
        }

        /// The build before counted by the name as sent: `Kate` and `\u{212A}ate` (KELVIN SIGN) are
        /// one user to the lookup and two counts, so each spelling had its own guesses and the
        /// right password under a fresh one signed in (an attacker review).
        @Test("a user's canonically equivalent spellings share one sign-in count: after the limit under one, the right password under another is refused 429")
        func equivalentSpellingsShareACount() async throws {
            // Kate's password is alice's (the same hash).
            let hash = "$scrypt$ln=17,r=8,p=1$YWxpY2Utc2FsdC0xNmJ5dA$SsR3LJsjCNZ6o8l9reWwkDV9NXQ+PLAra2ORzekfvY0"
            let cluster = try await SignInBrowser.cluster(throttle: "{per_user: 2, per_address: 100, window: 1m}",
                                                          extraUsers: "  - username: Kate\n    password_hash: \(hash)\n")
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            #expect(try browser.signIn(username: "Kate", password: "guess-1").status == 403)
            #expect(try browser.signIn(username: "Kate", password: "guess-2").status == 403)
            let kelvin = try browser.signIn(username: "\u{212A}ate", password: "alice-password-1")
            #expect(kelvin.status == 429, "\(kelvin.status) \(kelvin.text)")
        }

        @Test("login throttling per user and per client address, kept in Redis: refused with 429 and Retry-After without running the KDF")
        func loginThrottling() async throws {
            let cluster = try await SignInBrowser.cluster(throttle: "{per_user: 2, per_address: 3, window: 1m}")
            defer { Task { await cluster.shutdown() } }
            let browser = SignInBrowser(control: cluster.control)
            let wrong1 = try browser.signIn(password: "guess-1")
            #expect(wrong1.status == 403)
            #expect(wrong1.text.contains("Wrong username or password."))
            #expect(wrong1.text.contains(#"value="alice""#))
            #expect(try browser.signIn(password: "guess-2").status == 403)
            // alice is locked, even with her password, and the answer comes without a KDF run.
            let clock = ContinuousClock()
            var locked: HTTPTestResponse?
            let elapsed = try clock.measure { locked = try browser.signIn() }
            #expect(locked?.status == 429)
            #expect(locked?.text.contains("Too many failed sign-ins") == true)
            #expect(Int(locked?.header("retry-after") ?? "") ?? 0 > 0)
            #expect(elapsed < .milliseconds(1500), "\(elapsed)")
            // The address: one more failure (bob) reaches its limit, then bob is refused too.
            #expect(try browser.signIn(username: "bob", password: "guess-3").status == 403)
            #expect(try browser.signIn(username: "bob", password: "bob-password-2").status == 429)
            // The counters live in Redis, where every control plane reads them.
            let keys = try cluster.redis.cli("KEYS", "portcullis:as:throttle:*").split(separator: "\n").map(String.init).sorted()
            #expect(keys == ["portcullis:as:throttle:addr:127.0.0.1", "portcullis:as:throttle:user:alice", "portcullis:as:throttle:user:bob"])
            let metrics = try cluster.control.metrics()
            #expect(metrics.contains(#"portcullis_login_attempts_total{outcome="failure"} 3"#))
            #expect(metrics.contains(#"portcullis_login_attempts_total{outcome="throttled"} 2"#))
        }

        /// Counted per full address, one host guessed with a fresh count for every address of
        /// its /64 (an attacker review). Real Redis, the throttle the login page uses.
        @Test("sign-in attempts from the addresses of one IPv6 /64 share one count, an IPv4-mapped address counts as its IPv4 client, and another /64 has a count of its own")
        func loginThrottleCountsIPv6ByNetwork() async throws {
            let redis = try await RedisServerFixture.start()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "test"))
            let throttle = LoginThrottle(client: client, keys: ClusterKeys(prefix: "portcullis:"),
                                         limits: LoginThrottle.Limits(perUser: 100, perAddress: 3, window: .seconds(60)))
            // Each guess for another user, from another address of the same /64.
            for index in 0..<3 {
                #expect(try await throttle.attempt(username: "user\(index)", address: "2001:db8:5:6::\(index + 1)") == nil, "guess \(index)")
            }
            let fourth = try await throttle.attempt(username: "user9", address: "2001:db8:5:6:ffff:eeee:dddd:cccc")
            #expect(fourth != nil, "a fourth address of the /64 was counted afresh")
            #expect(try await throttle.attempt(username: "user9", address: "2001:db8:5:7::1") == nil, "the next /64 is another client")
            for index in 0..<3 {
                #expect(try await throttle.attempt(username: "v4user\(index)", address: "192.0.2.10") == nil)
            }
            #expect(try await throttle.attempt(username: "v4user9", address: "::ffff:192.0.2.10") != nil,
                    "the IPv4 client seen through a dual-stack listener is the same client")
            #expect(try await throttle.attempt(consoleAddress: "2001:db8:9::1") == nil)
            let keys = try redis.cli("KEYS", "portcullis:as:throttle:*addr*").split(separator: "\n").map(String.init).sorted()
            #expect(keys == ["portcullis:as:throttle:addr:192.0.2.10", "portcullis:as:throttle:addr:2001:db8:5:6::/64",
                             "portcullis:as:throttle:addr:2001:db8:5:7::/64", "portcullis:as:throttle:console-addr:2001:db8:9::/64"])
            await client.close()
            try await group.shutdownGracefully()
            await redis.shutdown()
        }

        /// The build before checked the counts, ran the KDF and only then counted a failure, so
        /// every sign-in in flight passed the check: an attacker review's 30 sent together all had
        /// their password checked, and the right one among them signed in.
        @Test("sign-ins sent at once for one user are counted before their passwords are checked: with a limit of 5 a user, no more than 5 of 20 reach the password check and the rest are refused 429; the right password sent after them is refused too")
        func concurrentSignInsAreCountedFirst() async throws {
            let cluster = try await SignInBrowser.cluster(throttle: "{per_user: 5, per_address: 100, window: 1m}")
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            // Each its own visitor with its own sign-in form, all posted at once, each on a
            // thread of its own (blocking sockets).
            var posts: [(cookie: String, body: String)] = []
            for _ in 0..<20 {
                let browser = SignInBrowser(control: control)
                var form = SignInBrowser.hiddenFields(try browser.authorize(browser.parameters()))
                form["username"] = "alice"
                form["password"] = "wrong-guess"
                let body = form.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")
                posts.append((try #require(browser.cookie), body))
            }
            let port = control.port
            let results = NIOLockedValueBox<[Int]>([])
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let group = DispatchGroup()
                for post in posts {
                    group.enter()
                    Thread.detachNewThread {
                        let status = (try? HTTPTestClient(port: port, timeout: 30).request(
                            "POST", "/oauth2/authorize",
                            headers: [("Connection", "close"), ("Content-Type", "application/x-www-form-urlencoded"),
                                      ("Cookie", "portcullis_session=\(post.cookie)")],
                            body: Array(post.body.utf8)).status) ?? 0
                        results.withLockedValue { $0.append(status) }
                        group.leave()
                    }
                }
                group.notify(queue: .global()) { done.resume() }
            }
            let statuses = results.withLockedValue { $0 }
            #expect(statuses.filter { $0 == 403 }.count <= 5, "\(statuses.sorted())")
            #expect(statuses.filter { $0 == 429 }.count >= 15, "\(statuses.sorted())")
            #expect(try SignInBrowser(control: control).signIn().status == 429)
            let metrics = try control.metrics()
            let failures = PrometheusText.sample(metrics, #"portcullis_login_attempts_total{outcome="failure"}"#) ?? 0
            #expect(failures <= 5, "\(failures) sign-ins reached the password check")
        }

        /// The build before marked the family revoked in the step that found the reuse and gave
        /// up when the revocation of its access tokens failed after it: presented again, the used
        /// token was only "revoked", and those access tokens stayed good (an attacker review).
        @Test("a used refresh token presented again is reported reused again (so its family's session is revoked again) until that revocation is recorded as made, then is refused")
        func refreshReuseRevokesUntilRecorded() async throws {
            let redis = try await RedisServerFixture.start()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "test"))
            let store = RefreshTokenStore(client: client, keys: ClusterKeys(prefix: "portcullis:"), ttl: .seconds(600),
                                          recordMAC: RecordMAC.derive(secret: Array(repeating: 7, count: 32), cluster: "portcullis:"))
            let first = try await store.startFamily(clientID: "web-app", subject: "alice", scope: ["orders:read"], audience: "api", user: true)
            let grant = try #require(try await store.lookup(first.token))
            let rotated = try await store.rotate(first.token, clientID: "web-app", grant: grant)
            if case .rotated = rotated {} else { Issue.record("the first refresh did not rotate: \(rotated)") }
            for attempt in 1...2 {
                let outcome = try await store.rotate(first.token, clientID: "web-app", grant: grant)
                guard case .reused(let family) = outcome else {
                    Issue.record("attempt \(attempt): \(outcome)")
                    continue
                }
                #expect(family == first.family, "attempt \(attempt)")
            }
            try await store.reuseRevoked(first.family)
            let after = try await store.rotate(first.token, clientID: "web-app", grant: grant)
            if case .invalid = after {} else { Issue.record("still reused after the revocation was recorded: \(after)") }
            await client.close()
            try await group.shutdownGracefully()
            await redis.shutdown()
        }
    }
}
