import Foundation
import PortcullisTestSupport
import Testing

/// A person at the operator console, over plain HTTP: keeps the console's cookies (by name, each
/// sent only under its path, as a browser does) and reads the CSRF token out of the pages.
final class ConsoleVisitor {
    let control: ControlProcess
    /// The `Host` the browser names: the admin listener's loopback address unless a test says otherwise.
    var host: String?
    /// Cookie name → (value, path).
    var cookies: [String: (value: String, path: String)] = [:]
    var csrf: String?

    init(control: ControlProcess) {
        self.control = control
    }

    /// The signed-in session's cookie (`portcullis_console`).
    var cookie: String? {
        get { cookies["portcullis_console"]?.value }
        set { cookies["portcullis_console"] = newValue.map { ($0, "/console") } }
    }

    /// The sign-in form's cookie (`portcullis_console_form`).
    var formCookie: String? { cookies["portcullis_console_form"]?.value }

    func get(_ path: String) throws -> HTTPTestResponse {
        try send("GET", path)
    }

    /// Posts `form` with the last page's CSRF token unless the form names its own (or `csrf: false`).
    func post(_ path: String, _ form: [String: String], csrf: Bool = true, contentType: String = "application/x-www-form-urlencoded") throws -> HTTPTestResponse {
        var form = form
        if csrf, form["csrf_token"] == nil, let token = self.csrf { form["csrf_token"] = token }
        let body = form.sorted { $0.key < $1.key }.map { "\(formEscape($0.key))=\(formEscape($0.value))" }.joined(separator: "&")
        return try send("POST", path, body: Array(body.utf8), contentType: contentType)
    }

    /// Takes the response's `Set-Cookie` fields as a browser would: a new value replaces the
    /// cookie of that name, `Max-Age=0` removes it.
    func store(_ response: HTTPTestResponse) {
        for set in response.headerValues("set-cookie") {
            let fields = set.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let pair = fields.first?.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false), pair.count == 2 else { continue }
            let name = String(pair[0])
            let path = fields.first { $0.hasPrefix("Path=") }.map { String($0.dropFirst(5)) } ?? "/"
            cookies[name] = fields.contains("Max-Age=0") ? nil : (String(pair[1]), path)
        }
    }

    private func send(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String? = nil) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: control.adminPort, timeout: 30)
        defer { client.close() }
        var headers = [("Connection", "close"), ("Host", host ?? "127.0.0.1:\(control.adminPort)")]
        if let contentType { headers.append(("Content-Type", contentType)) }
        let target = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let sent = cookies.filter { target == $0.value.path || target.hasPrefix($0.value.path + "/") }.sorted { $0.key < $1.key }
        if !sent.isEmpty { headers.append(("Cookie", sent.map { "\($0.key)=\($0.value.value)" }.joined(separator: "; "))) }
        let response = try client.request(method, path, headers: headers, body: body)
        store(response)
        if let token = SignInBrowser.hiddenFields(response)["csrf_token"] { csrf = token }
        return response
    }

    /// Opens the sign-in page and signs in with `token`; returns the answer to the POST.
    @discardableResult
    func signIn(token: String = ControlCluster.adminToken) throws -> HTTPTestResponse {
        let page = try get("/console/sign-in")
        guard page.status == 200 else { throw FixtureError("sign-in page answered \(page.status): \(page.text)") }
        return try post("/console/sign-in", ["token": token])
    }

    /// The id of the change a revoke redirected to.
    static func changeID(_ response: HTTPTestResponse) -> String? {
        guard let location = response.header("location"), location.hasPrefix("/console/revocations/rev_") else { return nil }
        return String(location.dropFirst("/console/revocations/".count))
    }
}

extension ControlPlaneTests {
    @Suite("operator console")
    struct OperatorConsoleTests {
        static let pages = ["/console/cluster", "/console/revocations", "/console/revocations/rev_0000", "/console/keys", "/console/audit"]

        @Test("every console page sends a visitor without a session to the sign-in page, and every form POST too; the propagation JSON answers 401")
        func signInRequired() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            for path in Self.pages + ["/console"] {
                let page = try visitor.get(path)
                #expect(page.status == 303, "\(path)")
                #expect(page.header("location") == (path == "/console" ? "/console/cluster" : "/console/sign-in"), "\(path)")
            }
            for path in ["/console/revocations", "/console/revocations/rev_0000/lift", "/console/keys/builtin/rotate", "/console/sign-out"] {
                let post = try visitor.post(path, ["kind": "subject", "value": "alice", "csrf_token": "guess"])
                #expect(post.status == 303 && post.header("location") == "/console/sign-in", "\(path)")
            }
            #expect(try visitor.get("/console/revocations/rev_0000/propagation").status == 401)
            // A session id that names no session (or an end user's) opens nothing either.
            visitor.cookie = "not-a-session"
            #expect(try visitor.get("/console/cluster").header("location") == "/console/sign-in")
            #expect((try cluster.control.admin("GET", "/v1/revocations?kind=subject&value=alice").json["items"] as? [Any])?.isEmpty == true)
        }

        @Test("sign-in: a wrong token is refused with a clear message, counted and audited; ten failures from an address block it (429) even for the right token")
        func wrongTokenRefusedAndThrottled() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            let wrong = try visitor.signIn(token: "test-admin-token-b2f1c8")
            #expect(wrong.status == 403)
            #expect(wrong.text.contains("That is not a valid admin token."))
            #expect(wrong.text.contains(#"<label for="token">Admin token</label>"#))
            #expect(try visitor.get("/console/cluster").header("location") == "/console/sign-in")
            let empty = try visitor.post("/console/sign-in", ["token": ""])
            #expect(empty.status == 403 && empty.text.contains("Enter an admin token."))
            let audit = try cluster.control.admin("GET", "/v1/audit?count=10").json["entries"] as? [[String: Any]] ?? []
            let refusals = audit.filter { $0["action"] as? String == "console.sign_in" && $0["outcome"] as? String == "unauthorized" }
            #expect(refusals.count == 2)
            #expect((refusals.first?["details"] as? [String: Any])?["credential"] as? String == "none")
            #expect((refusals.last?["details"] as? [String: Any])?["credential"] as? String == "invalid")
            #expect(try cluster.control.metrics().contains(#"portcullis_admin_auth_failures_total{credential="invalid"} 1"#))
            for _ in 0..<8 { _ = try visitor.post("/console/sign-in", ["token": "wrong"]) }
            let blocked = try visitor.post("/console/sign-in", ["token": ControlCluster.adminToken])
            #expect(blocked.status == 429)
            #expect(blocked.header("retry-after").flatMap(Int.init).map { $0 > 0 && $0 <= 300 } == true)
            #expect(blocked.text.contains("Too many failed sign-ins from this address"))
            #expect(try visitor.get("/console/cluster").header("location") == "/console/sign-in")
        }

        @Test("the sign-in form stores nothing in Redis; sign-in sets a new Secure, HttpOnly, SameSite=Strict cookie on /console; every page has the CSP with frame-ancestors 'none' and no inline script; the script is a same-origin file")
        func cookieAndHeaders() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            let page = try visitor.get("/console/sign-in")
            let anonymous = try #require(visitor.formCookie)
            #expect(visitor.cookie == nil)
            let formCookie = try #require(page.header("set-cookie"))
            #expect(Set(formCookie.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
                == ["Path=/console/sign-in", "Secure", "HttpOnly", "SameSite=Strict"])
            // Showing the sign-in form stores nothing (each visit used to store a 10-minute session).
            for _ in 0..<100 { #expect(try ConsoleVisitor(control: cluster.control).get("/console/sign-in").status == 200) }
            #expect(try cluster.redis.cli("KEYS", "portcullis:as:session:*").isEmpty)
            let signedIn = try visitor.post("/console/sign-in", ["token": ControlCluster.adminToken])
            #expect(signedIn.status == 303 && signedIn.header("location") == "/console/cluster")
            let setCookie = try #require(signedIn.headerValues("set-cookie").first { $0.hasPrefix("portcullis_console=") })
            let attributes = Set(setCookie.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(attributes == ["Path=/console", "Secure", "HttpOnly", "SameSite=Strict"])
            #expect(visitor.cookie != nil && visitor.cookie != anonymous)
            #expect(visitor.formCookie == nil, "sign-in clears the form's cookie")
            // The session is in Redis under its hash, never its id.
            let keys = try cluster.redis.cli("KEYS", "portcullis:as:session:console:*")
            #expect(keys.split(separator: "\n").count == 1 && !keys.contains(visitor.cookie ?? "-"))
            for response in [page] + (try Self.pages.dropLast(3).map { try visitor.get($0) }) + [try visitor.get("/console/keys"), try visitor.get("/console/audit")] {
                #expect(response.status == 200, "\(response.text.prefix(300))")
                let csp = response.header("content-security-policy") ?? ""
                #expect(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && csp.contains("default-src 'none'"))
                #expect(!csp.contains("unsafe-inline"))
                #expect(response.header("x-frame-options") == "DENY")
                #expect(response.header("cache-control") == "no-store")
                #expect(!response.text.contains("<script>") && !response.text.contains("style="))
            }
            let script = try visitor.get("/console/static/console.js")
            #expect(script.status == 200 && script.header("content-type")?.hasPrefix("text/javascript") == true)
            #expect(script.header("x-content-type-options") == "nosniff")
            #expect(try visitor.get("/console/static/other.js").status == 404)
        }

        @Test("a link from another site to a console page does not sign the operator out: it lands on the sign-in page, whose form cookie has a name and path of its own")
        func crossSiteLinkKeepsSession() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn()
            #expect(try visitor.get("/console/keys").status == 200)
            // A browser following a link from another site sends no SameSite=Strict cookie, but keeps
            // what the answers set: the redirect to the sign-in page, then that page.
            let linked = try HTTPTestClient(port: cluster.control.adminPort, timeout: 30)
            let redirect = try linked.request("GET", "/console/keys", headers: [("Connection", "close")])
            linked.close()
            #expect(redirect.status == 303 && redirect.header("location") == "/console/sign-in")
            visitor.store(redirect)
            let signInPage = try HTTPTestClient(port: cluster.control.adminPort, timeout: 30)
            let form = try signInPage.request("GET", "/console/sign-in", headers: [("Connection", "close"), ("Host", "127.0.0.1:\(cluster.control.adminPort)")])
            signInPage.close()
            #expect(form.status == 200)
            visitor.store(form)
            #expect(visitor.formCookie != nil)
            // Back in the console (a bookmark, the address bar): still signed in.
            let keys = try visitor.get("/console/keys")
            #expect(keys.status == 200, "\(keys.header("location") ?? "")")
            #expect(try visitor.post("/console/revocations", ["kind": "subject", "value": "after-link"]).status == 303)
        }

        @Test("a form without the session's CSRF token, or with another's, is refused, counted and audited as a cross-site request, and changes nothing; so is a sign-in form without one")
        func csrfRejected() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn()
            _ = try visitor.get("/console/revocations")
            let other = ConsoleVisitor(control: cluster.control)
            try other.signIn(token: "another-admin-token")
            _ = try other.get("/console/revocations")
            for token in [nil, other.csrf, ""] as [String?] {
                var form = ["kind": "subject", "value": "mallory"]
                form["csrf_token"] = token
                let refused = try visitor.post("/console/revocations", form, csrf: false)
                #expect(refused.status == 403)
                #expect(refused.text.contains("This form has expired or was not sent from this console"))
            }
            #expect(try visitor.post("/console/keys/builtin/rotate", [:], csrf: false).status == 403)
            #expect(try visitor.post("/console/sign-out", ["csrf_token": "x"]).status == 403)
            let list = try cluster.control.admin("GET", "/v1/revocations?kind=subject&value=mallory").json["items"] as? [Any]
            #expect(list?.isEmpty == true)
            // Each refusal is counted and audited as a cross-site request (the build before: neither).
            #expect(try cluster.control.metrics().contains(#"portcullis_admin_auth_failures_total{credential="cross_site"} 5"#))
            let audit = try cluster.control.admin("GET", "/v1/audit?count=50").json["entries"] as? [[String: Any]] ?? []
            let refusals = audit.filter { $0["outcome"] as? String == "cross_site_request" }.compactMap { $0["action"] as? String }
            #expect(refusals.sorted() == ["POST /console/keys/builtin/rotate", "POST /console/revocations", "POST /console/revocations",
                                          "POST /console/revocations", "POST /console/sign-out"], "\(refusals)")
            // The same visitor with its own token succeeds: the refusals were about the token alone.
            #expect(try visitor.post("/console/revocations", ["kind": "subject", "value": "mallory"]).status == 303)
            let fresh = ConsoleVisitor(control: cluster.control)
            _ = try fresh.get("/console/sign-in")
            let noToken = try fresh.post("/console/sign-in", ["token": ControlCluster.adminToken], csrf: false)
            #expect(noToken.status == 403 && noToken.text.contains("Form expired"))
            #expect(try fresh.get("/console/cluster").header("location") == "/console/sign-in")
        }

        @Test("sign-out ends the session: the old cookie opens no page any more and its record is gone from Redis")
        func signOutEndsSession() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn()
            #expect(try visitor.get("/console/cluster").status == 200)
            let cookie = try #require(visitor.cookie)
            let out = try visitor.post("/console/sign-out", [:])
            #expect(out.status == 303 && out.header("location") == "/console/sign-in?signed_out=1")
            #expect(out.header("set-cookie")?.contains("Max-Age=0") == true)
            visitor.cookie = cookie
            for path in Self.pages { #expect(try visitor.get(path).header("location") == "/console/sign-in", "\(path)") }
            #expect(try visitor.post("/console/revocations", ["kind": "subject", "value": "x"]).header("location") == "/console/sign-in")
            #expect(try cluster.redis.cli("KEYS", "portcullis:as:session:console:*").isEmpty)
            let audit = try cluster.control.admin("GET", "/v1/audit?count=10").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.first?["action"] as? String == "console.sign_out" && audit.first?["actor"] as? String == "test-ops")
        }

        /// Over plain HTTP to a name that is not loopback the browser drops the console's Secure
        /// cookies; the build before still took the token, answered "Form expired", and so had
        /// the operator send it in clear text again (an attacker review).
        @Test("over plain HTTP the console offers sign-in only at a loopback address: at another host name the sign-in page and a posted token are refused 403 with a page saying why, and no session is made")
        func plainHTTPSignInOnlyAtLoopback() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let remote = ConsoleVisitor(control: cluster.control)
            remote.host = "admin.example:\(cluster.control.adminPort)"
            let page = try remote.get("/console/sign-in")
            #expect(page.status == 403 && page.text.contains("only over HTTPS"), "\(page.status) \(page.text.prefix(300))")
            #expect(!page.text.contains(#"name="token""#))
            let posted = try remote.post("/console/sign-in", ["token": ControlCluster.adminToken, "csrf_token": "x"], csrf: false)
            #expect(posted.status == 403 && posted.text.contains("only over HTTPS"))
            #expect(remote.cookie == nil)
            for host in ["localhost:9", "console.localhost", "127.0.0.1", "127.1.2.3:80", "[::1]:9001"] {
                let local = ConsoleVisitor(control: cluster.control)
                local.host = host
                #expect(try local.get("/console/sign-in").status == 200, "\(host)")
            }
            #expect(try ConsoleVisitor(control: cluster.control).signIn().status == 303)
            // What a proxy says about the scheme is not taken: anyone can say it.
            let proxied = try HTTPTestClient(port: cluster.control.adminPort, timeout: 30)
            defer { proxied.close() }
            let viaProxy = try proxied.request("GET", "/console/sign-in", headers: [("Connection", "close"), ("Host", "admin.example"),
                                                                                    ("X-Forwarded-Proto", "https")])
            #expect(viaProxy.status == 403)
        }

        @Test("a reload that replaces an admin token under the same name ends the console sessions signed in with the old one; other sessions stay")
        func reloadEndsSessionsOfReplacedToken() async throws {
            let cluster = try await ControlCluster(authorizationServer: false)
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            let replaced = ConsoleVisitor(control: control)
            try replaced.signIn(token: "another-admin-token")
            let kept = ConsoleVisitor(control: control)
            try kept.signIn()
            #expect(try replaced.get("/console/cluster").status == 200)
            let file = control.directory + "/control-1.yaml"
            let original = try String(contentsOfFile: file, encoding: .utf8)
            try original.replacingOccurrences(of: sha256Hex("another-admin-token"), with: sha256Hex("rotated-admin-token-5c1e"))
                .write(toFile: file, atomically: true, encoding: .utf8)
            control.process.signal(SIGHUP)
            try await eventually("the old token's session no longer opens the console") {
                try replaced.get("/console/cluster").header("location") == "/console/sign-in"
            }
            #expect(try kept.get("/console/cluster").status == 200)
            let again = ConsoleVisitor(control: control)
            #expect(try again.signIn(token: "rotated-admin-token-5c1e").status == 303)
            #expect(try again.get("/console/cluster").text.contains(#"<span id="actor">second</span>"#))
        }

        @Test("revoking a subject through the console makes a real gateway refuse its token; the page shows the node's acknowledgement; lifting restores it; the audit log and page name the signed-in credential")
        func revokeReachesGateway() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            let token = try cluster.clientCredentials().access
            #expect(try cluster.statuses(token) == [200])
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn(token: "another-admin-token")
            _ = try visitor.get("/console/revocations")
            let revoked = try visitor.post("/console/revocations", ["kind": "subject", "value": "demo-client", "reason": "stolen laptop"])
            #expect(revoked.status == 303)
            let id = try #require(ConsoleVisitor.changeID(revoked), "\(revoked.headers)")
            try await eventually("the gateway refuses the revoked subject's token") { try cluster.statuses(token) == [401] }
            try await eventually("the propagation JSON shows gw-1's acknowledgement") {
                let json = try visitor.get("/console/revocations/\(id)/propagation").json
                return json["complete"] as? Bool == true && (json["nodes"] as? [[String: Any]])?.first?["id"] as? String == "gw-1"
            }
            let page = try visitor.get("/console/revocations/\(id)")
            #expect(page.status == 200)
            #expect(page.text.contains(#"<tr id="ack-gw-1" class="applied">"#))
            #expect(page.text.contains("1 of 1 live gateways applied it."))
            #expect(page.text.contains(#"<dd id="reason">stolen laptop</dd>"#) && page.text.contains(#"<dd id="by">second</dd>"#))
            let search = try visitor.get("/console/revocations?kind=subject&value=demo-client")
            #expect(search.text.contains(id))
            #expect(!(try visitor.get("/console/revocations?kind=client&value=demo-client")).text.contains(id))

            let lifted = try visitor.post("/console/revocations/\(id)/lift", ["reason": "found it"])
            #expect(lifted.status == 303)
            try await eventually("the gateway accepts the token again once the cut-off is lifted") { try cluster.statuses(token) == [200] }

            let audit = try cluster.control.admin("GET", "/v1/audit?count=10").json["entries"] as? [[String: Any]] ?? []
            let create = try #require(audit.first { $0["action"] as? String == "revocation.create" })
            #expect(create["actor"] as? String == "second" && create["target"] as? String == "subject:demo-client")
            #expect((create["details"] as? [String: Any])?["via"] as? String == "console")
            #expect(audit.contains { $0["action"] as? String == "revocation.delete" && $0["actor"] as? String == "second" && $0["target"] as? String == id })
            #expect(audit.contains { $0["action"] as? String == "console.sign_in" && $0["actor"] as? String == "second" && $0["outcome"] as? String == "ok" })
            let auditPage = try visitor.get("/console/audit")
            #expect(auditPage.text.contains(#"<td class="actor">second</td><td class="action">revocation.create</td><td class="target">subject:demo-client</td>"#))
            // The change itself carries the credential's name as well.
            let change = try cluster.control.admin("GET", "/v1/revocations/\(id)").json
            #expect(change["actor"] as? String == "second")
        }

        @Test("bad forms and queries get a page that says what is wrong (400, 403, 404, 409), never a 500")
        func badInputPages() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn()
            _ = try visitor.get("/console/revocations")
            let cases: [(form: [String: String], message: String)] = [
                (["kind": "subject"], "value: required"),
                (["kind": "bogus", "value": "x"], "kind: choose subject, client or jti"),
                (["kind": "key", "value": "kid-1"], "kind: choose subject, client or jti"),
                (["kind": "subject", "value": "a\u{1}b"], "value: must not contain control characters"),
                (["kind": "subject", "value": "x", "issuer": "a|b"], "issuer: expected a non-empty iss value"),
                (["kind": "subject", "value": "x", "reason": String(repeating: "r", count: 2000)], "reason: longer than 1024 bytes"),
            ]
            for item in cases {
                let page = try visitor.post("/console/revocations", item.form)
                #expect(page.status == 400, "\(item.form)")
                #expect(page.text.contains("Not revoked: " + item.message), "\(item.form): \(page.text.suffix(1500))")
                #expect(page.text.contains(#"role="alert""#))
            }
            let json = try visitor.post("/console/revocations", ["kind": "subject", "value": "x"], contentType: "application/json")
            #expect(json.status == 400 && json.text.contains("application/x-www-form-urlencoded"))
            #expect(try visitor.get("/console/revocations?kind=bogus").status == 400)
            #expect(try visitor.get("/console/revocations?after=abc").status == 400)
            #expect(try visitor.get("/console/audit?count=0").status == 400)
            let missing = try visitor.get("/console/revocations/rev_nope")
            #expect(missing.status == 404 && missing.text.contains("No revocation &#39;rev_nope&#39;"))
            let jti = try cluster.control.admin("POST", "/v1/revocations", json: #"{"kind":"jti","value":"t-1"}"#).json["id"] as? String ?? ""
            let notLiftable = try visitor.post("/console/revocations/\(jti)/lift", [:])
            #expect(notLiftable.status == 409 && notLiftable.text.contains("only subject, client and grant cut-offs can be lifted"), "\(notLiftable.text)")
            let external = try visitor.post("/console/keys/nope/rotate", [:])
            #expect(external.status == 404 && external.text.contains("no issuer named &#39;nope&#39;"))
            // Nothing was revoked by the bad forms (only the jti above).
            let items = try cluster.control.admin("GET", "/v1/revocations").json["items"] as? [[String: Any]] ?? []
            #expect(items.count == 1)
            #expect(!cluster.control.process.output.contains("unhandled error"))
        }

        @Test("the cluster page shows each gateway live with its applied sequence, lag, key-set version and Redis state; rotating on the keys page is audited and reaches every gateway")
        func clusterAndKeysPages() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let visitor = ConsoleVisitor(control: cluster.control)
            try visitor.signIn()
            let sequence = try cluster.control.admin("POST", "/v1/revocations?wait=10s", json: #"{"kind":"subject","value":"eve"}"#).json["sequence"] as? Int ?? -1
            // A gateway that has just started may not have reported its Redis link and key sets yet.
            var page = try visitor.get("/console/cluster")
            try await eventually("both gateways report Redis connected and the current key set") {
                page = try visitor.get("/console/cluster")
                return page.text.components(separatedBy: #"<td class="redis">connected</td>"#).count == 3
                    && page.text.components(separatedBy: "(current)").count == 3
            }
            #expect(page.status == 200)
            for id in ["gw-1", "gw-2"] {
                let row = page.text.components(separatedBy: "<tr id=\"node-\(id)\"").dropFirst().first?.components(separatedBy: "</tr>").first ?? ""
                #expect(row.contains(#"<td class="state">live</td>"#), "\(row)")
                #expect(row.contains("<td class=\"applied\">\(sequence)</td>") && row.contains(#"<td class="lag">0</td>"#), "\(row)")
                #expect(row.contains(#"<td class="redis">connected</td>"#) && row.contains("(current)"), "\(row)")
            }
            #expect(page.text.contains(#"<strong id="live">2</strong>"#))
            let before = try cluster.control.admin("GET", "/v1/keys/builtin").json["active_kid"] as? String
            _ = try visitor.get("/console/keys")
            let rotated = try visitor.post("/console/keys/builtin/rotate", [:])
            #expect(rotated.status == 303)
            let keys = try visitor.get(rotated.header("location") ?? "/console/keys")
            let after = try cluster.control.admin("GET", "/v1/keys/builtin").json
            #expect(after["active_kid"] as? String != before)
            #expect(keys.text.contains("Rotated: the new signing key is \(after["active_kid"] as? String ?? "?")."))
            #expect(keys.text.contains(#"<span class="current">2</span> of 2"#))
            let audit = try cluster.control.admin("GET", "/v1/audit?count=5").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.contains { $0["action"] as? String == "keys.rotate" && $0["actor"] as? String == "test-ops" && $0["outcome"] as? String == "ok" })
        }
    }
}
