import Foundation
import HTTPTypes
import Hummingbird
import PortcullisCluster
import PortcullisJOSE

/// The operator console under `/console` on the admin listener: the cluster at a glance,
/// revocations (search, revoke with live propagation, lift), keys (rotate) and the audit log, for
/// a person signed in with an admin credential. It reads and changes the cluster only through the
/// admin API's services (`ClusterView`, `RevocationService`, `PropagationTracker`, the signing-key
/// ring, `AuditLog`), and every change is audited with the signed-in credential's name.
///
/// Signed-in sessions live in Redis (`LoginSessionStore` under the `console:` namespace; the
/// sign-in form's session is only its cookie), so any control plane serves any page and signing
/// out ends the session everywhere; the cookie is `Secure;
/// HttpOnly; SameSite=Strict` on `/console`. Every form carries the session's CSRF token. No
/// handler answers 500 for bad input: errors are pages that say what was wrong.
struct OperatorConsole: Sendable {
    let api: AdminAPI
    let failureAudit: AuditFailureLimiter
    let sessions: LoginSessionStore
    let throttle: LoginThrottle
    let pages = ConsolePages()

    static let root = "/console"
    static let cookieName = "portcullis_console"
    /// The sign-in form's cookie: a name and path of its own, so that the form a cross-site link
    /// lands on (the session cookie, `SameSite=Strict`, stays behind) does not overwrite a
    /// signed-in session's cookie in the browser.
    static let formCookieName = "portcullis_console_form"
    static let signInPath = "/console/sign-in"
    /// Failed sign-ins per client address before sign-in is refused (429) for the rest of the
    /// window that began with the first failure.
    static let signInLimits = LoginThrottle.Limits(perUser: 10, perAddress: 10, window: .seconds(300))
    /// Rows per page of a revocation search.
    static let pageSize = 50

    init(api: AdminAPI, failureAudit: AuditFailureLimiter) {
        self.api = api
        self.failureAudit = failureAudit
        sessions = LoginSessionStore(client: api.view.client, keys: api.view.keys,
                                     formMAC: LoginSessionStore.formMAC(secret: api.config.cluster.secret, cluster: api.config.cluster.keyPrefix),
                                     recordMAC: RecordMAC.derive(secret: api.config.cluster.secret, cluster: api.config.cluster.keyPrefix),
                                     namespace: "console:")
        throttle = LoginThrottle(client: api.view.client, keys: api.view.keys, limits: Self.signInLimits)
    }

    /// Whether `path` is the console's (the admin middleware leaves those to it).
    static func owns(_ path: String) -> Bool {
        path == root || path.hasPrefix(root + "/")
    }

    /// The signed-in person: their session and the audit "who".
    struct Operator: Sendable {
        var session: LoginSessionStore.Session
        var actor: String
    }

    func addRoutes(_ router: Router<ControlRequestContext>) {
        router.get("/console") { _, _ in Self.redirect("/console/cluster") }
        router.get("/console/static/:file") { _, context in
            guard let response = ConsoleAssets.response(try context.parameters.require("file")) else {
                throw APIError.notFound("no such file")
            }
            return response
        }
        router.get("/console/sign-in") { request, context in await guarded(nil) { try await signInPage(request, context: context) } }
        router.post("/console/sign-in") { request, context in await guarded(nil) { try await signIn(request, context: context) } }
        router.post("/console/sign-out") { request, context in
            await signedIn(request, context) { user in
                _ = try await checkedForm(request, user, context: context)
                try await sessions.delete(user.session.id)
                await api.audit.record(AuditLog.Entry(actor: user.actor, action: "console.sign_out", target: "session", from: context.peer,
                                                      outcome: "ok", status: 303))
                var response = Self.redirect("/console/sign-in?signed_out=1")
                response.headers[.setCookie] = "\(Self.cookieName)=; Path=\(Self.root); Max-Age=0; Secure; HttpOnly; SameSite=Strict"
                return response
            }
        }
        router.get("/console/cluster") { request, context in await signedIn(request, context) { try await clusterPage($0) } }
        router.get("/console/revocations") { request, context in await signedIn(request, context) { try await revocationsPage(request, $0) } }
        router.post("/console/revocations") { request, context in await signedIn(request, context) { try await revoke(request, context: context, $0) } }
        router.get("/console/revocations/:id") { request, context in
            await signedIn(request, context) { try await revocationPage(try context.parameters.require("id"), $0) }
        }
        router.get("/console/revocations/:id/propagation") { request, context in
            // JSON for the page's script; refused as JSON (401), not redirected, without a session.
            guard try await api.confirmed({ try await currentOperator(request, context) }) != nil else {
                throw APIError(.unauthorized, "unauthorized", "sign in to the console first")
            }
            let id = try context.parameters.require("id")
            guard let event = try await api.confirmed({ try await api.store.get(id: id) }) else {
                throw APIError.notFound("no revocation '\(id)'")
            }
            return Response.json(try await api.confirmed { try await api.tracker.current(event) }.json)
        }
        router.post("/console/revocations/:id/lift") { request, context in
            await signedIn(request, context) { try await lift(try context.parameters.require("id"), request, context: context, $0) }
        }
        router.get("/console/keys") { request, context in await signedIn(request, context) { try await keysPage(request, $0) } }
        router.post("/console/keys/:issuer/rotate") { request, context in
            await signedIn(request, context) { try await rotate(try context.parameters.require("issuer"), request, context: context, $0) }
        }
        router.get("/console/audit") { request, context in await signedIn(request, context) { try await auditPage(request, $0) } }
    }

    // MARK: Sessions

    /// The signed-in operator, if the request's cookie names a signed-in console session whose
    /// credentials the settings in force still admit, the certificate among them presented on
    /// this connection too (`actor(principal:settings:connectionSubject:)`).
    func currentOperator(_ request: Request, _ context: ControlRequestContext) async throws -> Operator? {
        guard let id = LoginSessionStore.cookie(Self.cookieName, in: request.headers),
              let session = try await sessions.lookup(id), let principal = session.username else { return nil }
        let settings = api.settings.current
        let subject = settings.mode.acceptsCertificates ? await context.verifiedClientCertificateSubject() : nil
        guard let actor = Self.actor(principal: principal, settings: settings, connectionSubject: subject) else { return nil }
        return Operator(session: session, actor: actor)
    }

    /// What a session stores about the credentials presented at sign-in: `v2`, then the token's
    /// fingerprint and name and the client certificate's subject, each base64url or `-` when
    /// absent. The fingerprint is of the configured hash, so a reload that replaces a token under
    /// the same name ends the sessions of the old one.
    static func principal(credential: AdminCredential?, subject: String?) -> String {
        func field(_ text: String?) -> String { text.map { Base64URL.encode(Array($0.utf8)) } ?? "-" }
        return ["v2", field(credential.map(fingerprint)), field(credential?.name), field(subject)].joined(separator: " ")
    }

    static func fingerprint(_ credential: AdminCredential) -> String {
        String(Hex.sha256(Hex.encode(credential.digest)).prefix(32))
    }

    /// The audit "who" of a session's principal, or nil when the settings in force would not
    /// admit what was presented at sign-in — `admin_auth` asked again of the stored token (still
    /// configured, same hash) and certificate subject — or when the certificate it was signed in
    /// with is not the one this connection presents (`connectionSubject`, verified in this
    /// connection's TLS handshake; a reload that replaces `client_ca` closes the connections
    /// opened under the old one, see `ListenerTLSBox`). So neither a reload to a stricter
    /// `admin_auth` nor a session cookie presented without the certificate it was made with keeps
    /// the console open.
    static func actor(principal: String, settings: AdminSettings, connectionSubject: String?) -> String? {
        let fields = principal.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 4, fields[0] == "v2" else { return nil }
        func decoded(_ text: String) -> String?? {
            if text == "-" { return .some(nil) }
            guard let bytes = Base64URL.decode(text) else { return nil }
            return .some(String(decoding: bytes, as: UTF8.self))
        }
        guard let fingerprint = decoded(fields[1]), let name = decoded(fields[2]), let subject = decoded(fields[3]) else { return nil }
        var credential: AdminCredential?
        if let fingerprint, let name, settings.mode != .certificate {
            guard let match = settings.authenticator.credentials.first(where: { $0.name == name && Self.fingerprint($0) == fingerprint }) else {
                return nil
            }
            credential = match
        }
        // The certificate counts only over a connection presenting it; a token the mode admits
        // alone needs none (a browser that sent a certificate at sign-in need not keep sending it).
        let certified = subject.flatMap { settings.mode.acceptsCertificates && connectionSubject == $0 ? $0 : nil }
        if let credential, settings.admits(token: credential, subject: nil) {
            return credential.name + (certified.map { " (\($0))" } ?? "")
        }
        guard subject == nil || certified != nil, settings.admits(token: credential, subject: certified) else { return nil }
        if let credential { return credential.name + (certified.map { " (\($0))" } ?? "") }
        return certified
    }

    /// Runs a page for a signed-in operator; anyone else is sent to the sign-in page.
    private func signedIn(_ request: Request, _ context: ControlRequestContext, _ body: (Operator) async throws -> Response) async -> Response {
        await guarded(nil) {
            guard let user = try await currentOperator(request, context) else { return Self.redirect("/console/sign-in") }
            return await guarded(user) { try await body(user) }
        }
    }

    /// Turns every failure into a page: a client mistake into its 4xx with the message, a store
    /// failure into 503 with `Retry-After`; never a 500.
    private func guarded(_ user: Operator?, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let error as APIError {
            var page = pages.error(title: Self.title(error.status), message: error.message,
                                   status: error.status, actor: user?.actor, csrf: user?.session.csrfToken)
            if error.status == .serviceUnavailable { page.headers[.retryAfter] = "1" }
            return page
        } catch {
            api.logger.error("console: the cluster store failed", metadata: ["error": "\(error)"])
            var page = pages.error(title: "Temporarily unavailable", message: "The console cannot reach the cluster store (Redis) right now. Try again in a moment.",
                                   status: .serviceUnavailable, actor: user?.actor, csrf: user?.session.csrfToken)
            page.headers[.retryAfter] = "1"
            return page
        }
    }

    static func title(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 403: "Form expired"
        case 404: "Not found"
        case 409: "Not possible now"
        case 503: "Temporarily unavailable"
        default: "Not done"
        }
    }

    /// The form of a POST by `user`, refused (403) unless it carries the session's CSRF token. A
    /// refusal is what another site's page posting through the operator's browser meets (CSRF):
    /// counted (`credential="cross_site"`) and audited at the refusals' rate, as the API's
    /// cross-site refusals are, so that an attempt leaves a trace.
    private func checkedForm(_ request: Request, _ user: Operator, context: ControlRequestContext) async throws -> [String: String] {
        let form = try await RequestInput.form(request)
        guard Self.csrfMatches(form, user.session) else {
            api.metrics.adminAuthFailure(credential: "cross_site")
            switch failureAudit.admit() {
            case .record(let suppressedBefore):
                var details = ["csrf_token": form["csrf_token"] == nil ? "none" : "wrong"]
                if suppressedBefore > 0 { details["suppressed_before"] = String(suppressedBefore) }
                await api.audit.record(AuditLog.Entry(actor: user.actor, action: "POST " + request.uri.path, target: "-", from: context.peer,
                                                      outcome: "cross_site_request", status: 403, details: details))
            case .suppress:
                api.metrics.auditSuppressed.increment()
            }
            throw Self.formExpired
        }
        return form
    }

    static func csrfMatches(_ form: [String: String], _ session: LoginSessionStore.Session) -> Bool {
        guard let presented = form["csrf_token"] else { return false }
        return PasswordHash.constantTimeEqual(Array(presented.utf8), Array(session.csrfToken.utf8))
    }

    static let formExpired = APIError(.forbidden, "invalid_request",
                                      "This form has expired or was not sent from this console, so it was not accepted. Reload the page and try again.")

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store", .contentLength: "0"])
    }

    /// `Secure` (browsers keep it over plain HTTP only on loopback: beyond it, give the admin
    /// listener TLS), `HttpOnly`, `SameSite=Strict`: the console is never entered from another site.
    static func cookie(_ id: String) -> String {
        "\(cookieName)=\(id); Path=\(root); Secure; HttpOnly; SameSite=Strict"
    }

    /// The sign-in form's cookie, sent back only to the sign-in page; `nil` clears it.
    static func formCookie(_ id: String?) -> String {
        "\(formCookieName)=\(id ?? ""); Path=\(signInPath); " + (id == nil ? "Max-Age=0; " : "") + "Secure; HttpOnly; SameSite=Strict"
    }

    // MARK: Sign-in

    /// Whether this request may be offered a sign-in: over HTTPS, or addressed to a loopback
    /// host (an SSH tunnel or a port-forward to `localhost`). Over plain HTTP to another address
    /// the admin token would cross the network in clear text — and the browser would drop the
    /// console's `Secure` cookies, so the operator, told the form expired, would send it again.
    ///
    /// Over plain HTTP both must be loopback: the `Host` and the TCP peer. A plain-HTTP proxy on
    /// the same machine sends `Host: 127.0.0.1` for a remote client; a remote client names any
    /// `Host` it likes. Behind a TLS-terminating proxy, give the admin listener
    /// `admin_tls` too.
    private func offersSignIn(_ request: Request, _ context: ControlRequestContext) async -> Bool {
        if await context.isTLS { return true }
        guard let peer = context.remoteAddress?.ipAddress, peer == "::1" || peer.hasPrefix("127.") || peer.hasPrefix("::ffff:127.") else {
            return false
        }
        return Self.isLoopback(authority: request.head.authority)
    }

    /// `localhost`, a name under `.localhost` (RFC 6761), `127.0.0.0/8` or `[::1]`, with or without a port.
    static func isLoopback(authority: String?) -> Bool {
        guard var host = authority?.lowercased(), !host.isEmpty else { return false }
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            return host[host.index(after: host.startIndex)..<end] == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host == "localhost" || host.hasSuffix(".localhost") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { part in UInt8(part).map { String($0) == part } ?? false }
    }

    private static let plainHTTPMessage = "The console takes sign-ins only over HTTPS (admin_tls) or at a loopback address such as an SSH tunnel or port-forward to localhost: over plain HTTP to this address your admin token would cross the network in clear text."

    private func signInPage(_ request: Request, context: ControlRequestContext) async throws -> Response {
        guard await offersSignIn(request, context) else {
            return pages.error(title: "Sign-in needs HTTPS", message: Self.plainHTTPMessage, status: .forbidden)
        }
        if try await currentOperator(request, context) != nil { return Self.redirect("/console/cluster") }
        let session = sessions.anonymous()
        let signedOut = (request.uri.query ?? "").split(separator: "&").contains("signed_out=1")
        var context: [String: Any] = ["csrf": session.csrfToken]
        if signedOut { context["notice"] = "You are signed out." }
        var page = pages.render("sign-in", title: "Sign in", context)
        page.headers[.setCookie] = Self.formCookie(session.id)
        return page
    }

    private func signIn(_ request: Request, context: ControlRequestContext) async throws -> Response {
        guard await offersSignIn(request, context) else {
            return pages.error(title: "Sign-in needs HTTPS", message: Self.plainHTTPMessage, status: .forbidden)
        }
        let form: [String: String]
        do {
            form = try await RequestInput.form(request)
        } catch let error as APIError {
            return pages.error(title: "Not signed in", message: error.message, status: error.status)
        }
        guard let id = LoginSessionStore.cookie(Self.formCookieName, in: request.headers), let session = try await sessions.lookup(id),
              session.username == nil, Self.csrfMatches(form, session) else {
            return pages.error(title: "Form expired", message: "This sign-in form has expired or was not sent from this console. Open the sign-in page again.",
                               status: .forbidden)
        }
        func again(_ message: String, _ status: HTTPResponse.Status) -> Response {
            pages.render("sign-in", title: "Sign in", ["csrf": session.csrfToken, "error": message], status: status)
        }
        let address = context.remoteAddress?.ipAddress ?? context.peer
        if let wait = try await throttle.attempt(consoleAddress: address) {
            let minutes = max(1, Int((wait.components.seconds + 59) / 60))
            var page = again("Too many failed sign-ins from this address. Try again in \(minutes) minute\(minutes == 1 ? "" : "s").", .tooManyRequests)
            page.headers[.retryAfter] = String(max(1, wait.components.seconds))
            return page
        }
        let settings = api.settings.current
        let token = form["token"] ?? ""
        let credential = token.isEmpty || settings.mode == .certificate ? nil : settings.authenticator.authenticate(authorization: "Bearer " + token)
        let subject = settings.mode.acceptsCertificates ? await context.verifiedClientCertificateSubject() : nil
        guard settings.admits(token: credential, subject: subject) else {
            let presented = token.isEmpty ? "none" : "invalid"
            api.metrics.adminAuthFailure(credential: presented)
            switch failureAudit.admit() {
            case .record(let suppressedBefore):
                var details = ["credential": presented]
                if suppressedBefore > 0 { details["suppressed_before"] = String(suppressedBefore) }
                await api.audit.record(AuditLog.Entry(actor: subject ?? "-", action: "console.sign_in", target: "session", from: context.peer,
                                                      outcome: "unauthorized", status: 403, details: details))
            case .suppress:
                api.metrics.auditSuppressed.increment()
            }
            return again(token.isEmpty ? "Enter an admin token." : "That is not a valid admin token.", .forbidden)
        }
        try await throttle.succeeded(consoleAddress: address)
        let principal = Self.principal(credential: credential, subject: subject)
        // A new session id on sign-in: one planted in the browser before it is worth nothing after.
        try await sessions.delete(session.id)
        let signedIn = try await sessions.create(username: principal, authTime: Int64(Date().timeIntervalSince1970))
        await api.audit.record(AuditLog.Entry(actor: Self.actor(principal: principal, settings: settings, connectionSubject: subject) ?? principal, action: "console.sign_in",
                                              target: "session", from: context.peer, outcome: "ok", status: 303))
        var response = Self.redirect("/console/cluster")
        response.headers[.setCookie] = Self.cookie(signedIn.id)
        response.headers.append(HTTPField(name: .setCookie, value: Self.formCookie(nil)))
        return response
    }

    // MARK: Cluster

    private func clusterPage(_ user: Operator) async throws -> Response {
        let (sequence, _, nodes) = try await api.confirmed { try await api.view.gateways() }
        let controls = try await api.confirmed { try await api.view.controlPlanes() }
        let counts = api.view.revocationCounts()
        var published = Set<String>()
        for iss in api.fetcher.issuers.map(\.issuer) + [api.authorizationServer?.config.issuer].compactMap({ $0 }) {
            if let record = try await api.confirmed({ try await api.publisher.record(issuer: iss) }) { published.insert(record.version) }
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let rows: [[String: Any]] = nodes.map { node in
            let record = node.record
            let age = max(0, now - record.heartbeatAtMillis)
            let keysets = record.keySetVersions.sorted { $0.key < $1.key }
                .map { "\($0.key) \($0.value)" + (published.contains($0.value) ? " (current)" : " (behind)") }
            return [
                "id": record.id, "state": age > record.heartbeatIntervalMillis * 3 ? "gone" : "live", "address": record.address,
                "version": record.version, "applied": node.appliedSequence < 0 ? "none" : String(node.appliedSequence),
                "lag": String(node.lagSequences), "lag_seconds": node.lagSeconds.map { String(format: "%.1f", $0) } ?? "unknown",
                "keysets": keysets.isEmpty ? "none" : keysets.joined(separator: ", "),
                "redis": record.redisConnected ? "connected" : "disconnected", "ratelimit": record.rateLimitMode,
                "heartbeat": String(format: "%.1f s", Double(age) / 1000),
            ]
        }
        return pages.render("cluster", title: "Cluster", [
            "sequence": sequence, "jti": counts["jti"] ?? 0, "subject": counts["subject"] ?? 0, "client": counts["client"] ?? 0,
            "key": counts["key"] ?? 0, "grant": counts["grant"] ?? 0, "session": counts["session"] ?? 0, "controls": controls.map(\.id).joined(separator: ", "), "live": nodes.count,
            "in_step": nodes.filter { $0.lagSequences == 0 }.count, "nodes": rows,
        ], actor: user.actor, csrf: user.session.csrfToken)
    }

    // MARK: Revocations

    private static let searchKinds: [(value: String, label: String)] = [
        ("", "any"), ("subject", "subject"), ("client", "client"), ("grant", "grant"), ("jti", "jti"), ("key", "key"), ("session", "session"),
    ]

    private func revocationsPage(_ request: Request, _ user: Operator, error: String? = nil, status: HTTPResponse.Status = .ok,
                                 revokeValue: String = "", revokeReason: String = "") async throws -> Response {
        let query = FormEncoding.decode(request.uri.query ?? "") ?? [:]
        let kindText = query["kind"] ?? ""
        let value = query["value"] ?? ""
        var problem = error
        var kind: Revocation.Kind?
        var after: Int64 = 0
        if !kindText.isEmpty {
            kind = Revocation.Kind(rawValue: kindText)
            if kind == nil { problem = problem ?? "Kind: choose subject, client, grant, jti, key, session or any." }
        }
        if let text = query["after"] {
            guard let number = Int64(text), number >= 0 else {
                return pages.error(title: "Not done", message: "after: expected a sequence number.", status: .badRequest, actor: user.actor,
                                   csrf: user.session.csrfToken)
            }
            after = number
        }
        var items: [RevocationEvent] = []
        if problem == nil || error != nil {
            items = try await api.confirmed {
                try await api.store.list(kind: kind, value: value.isEmpty ? nil : value, afterSequence: after, limit: Self.pageSize)
            }
        }
        var context: [String: Any] = [
            "csrf": user.session.csrfToken, "value": value, "revoke_value": revokeValue, "revoke_reason": revokeReason,
            "kinds": Self.searchKinds.map { ["value": $0.value, "label": $0.label, "selected": $0.value == kindText] },
            "items": items.map(Self.row),
            "scope": value.isEmpty && kind == nil ? "Changes in the log, oldest first." : "Changes matching the search, oldest first.",
        ]
        if let problem { context["error"] = problem }
        if items.count == Self.pageSize, let last = items.last {
            context["next"] = "/console/revocations?" + [("kind", kindText), ("value", value), ("after", String(last.sequence))]
                .map { FormEncoding.escape($0.0) + "=" + FormEncoding.escape($0.1) }.joined(separator: "&")
        }
        let failed = problem != nil && status == .ok ? HTTPResponse.Status.badRequest : status
        return pages.render("revocations", title: "Revocations", context, actor: user.actor, csrf: user.session.csrfToken, status: failed)
    }

    private static func row(_ event: RevocationEvent) -> [String: Any] {
        let revocation = event.revocation
        let extra = revocation.client.map { " (client \($0))" } ?? (revocation.batch.isEmpty ? "" : " (and \(revocation.batch.count) more)")
        return [
            "id": revocation.id, "sequence": event.sequence, "operation": revocation.operation.rawValue, "kind": revocation.kind.rawValue,
            "value": revocation.value + extra, "issuer": revocation.issuer ?? "any", "created": time(revocation.createdAtMillis),
            "actor": revocation.actor, "reason": revocation.reason ?? "",
        ]
    }

    private func revoke(_ request: Request, context: ControlRequestContext, _ user: Operator) async throws -> Response {
        let form = try await checkedForm(request, user, context: context)
        var members: [String: JSONValue] = [:]
        for name in ["kind", "value", "issuer", "reason"] {
            if let text = form[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty { members[name] = .string(text) }
        }
        var target = "(invalid request)"
        do {
            let event = try await api.audited("revocation.create", target: target, actor: user.actor, from: context.peer, details: ["via": "console"]) {
                if let kind = form["kind"], !["subject", "client", "jti"].contains(kind) {
                    throw APIError.invalid("kind", "choose subject, client or jti")
                }
                let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
                let input = try RevocationInput.parse(members, now: nowMillis / 1000, nowMillis: nowMillis, maxTokenLifetime: api.revocations.maxTokenLifetime)
                target = input.auditTarget
                let event = try await api.confirmed { try await api.revocations.add(input, actor: user.actor) }
                return (event, ["id": event.revocation.id, "sequence": String(event.sequence)])
            }
            return Self.redirect("/console/revocations/" + FormEncoding.escape(event.revocation.id))
        } catch let error as APIError where error.status == .badRequest {
            return try await revocationsPage(request, user, error: "Not revoked: " + error.message, status: .badRequest,
                                             revokeValue: form["value"] ?? "", revokeReason: form["reason"] ?? "")
        }
    }

    private func revocationPage(_ id: String, _ user: Operator) async throws -> Response {
        guard let event = try await api.confirmed({ try await api.store.get(id: id) }) else {
            throw APIError.notFound("No revocation '\(id)': unknown, or expired and pruned.")
        }
        let propagation = try await api.confirmed { try await api.tracker.current(event) }
        let revocation = event.revocation
        let applied = propagation.nodes.filter(\.applied).count
        var context = Self.row(event)
        context["csrf"] = user.session.csrfToken
        context["state"] = propagation.complete ? "complete" : "waiting"
        context["summary"] = "\(applied) of \(propagation.nodes.count) live gateways applied it" + (propagation.complete ? "." : " so far.")
        context["nodes"] = propagation.nodes.map { node -> [String: Any] in
            [
                "id": node.id, "applied": node.applied ? "applied" : "waiting", "class": node.applied ? "applied" : "waiting",
                "latency": node.latencyMicros.map { String(format: "%.2f ms", Double($0) / 1000) } ?? "-", "applied_sequence": node.appliedSequence,
            ]
        }
        context["liftable"] = revocation.operation == .add && revocation.kind.isCutoff && !api.view.revocationList.set.isLifted(revocation.id)
        if let lifts = revocation.lifts { context["lifts"] = lifts }
        return pages.render("revocation", title: "Revocation \(revocation.id)", context, actor: user.actor, csrf: user.session.csrfToken)
    }

    private func lift(_ id: String, _ request: Request, context: ControlRequestContext, _ user: Operator) async throws -> Response {
        let form = try await checkedForm(request, user, context: context)
        let reason = form["reason"].flatMap { $0.isEmpty ? nil : $0 }
        let lifted = try await api.audited("revocation.delete", target: id, actor: user.actor, from: context.peer, details: ["via": "console"]) {
            let event = try await api.liftableCutoff(id)
            let lifted = try await api.confirmed { try await api.revocations.lift(event, actor: user.actor, reason: reason) }
            return (lifted, ["lifted": id, "id": lifted.revocation.id])
        }
        return Self.redirect("/console/revocations/" + FormEncoding.escape(lifted.revocation.id))
    }

    // MARK: Keys

    private func keysPage(_ request: Request, _ user: Operator) async throws -> Response {
        let gateways = try await api.confirmed { try await api.view.gateways().nodes }
        var issuers: [JSONValue] = []
        for issuer in api.fetcher.issuers {
            issuers.append(try await api.issuerJSON(name: issuer.name, iss: issuer.issuer, source: AdminAPI.source(issuer), gateways: gateways))
        }
        if let server = api.authorizationServer {
            issuers.append(try await api.issuerJSON(name: server.config.name, iss: server.config.issuer, source: ["type": "builtin"], gateways: gateways))
        }
        let live = gateways.map(\.record.id)
        let sections: [[String: Any]] = issuers.map { issuer in
            let current = (issuer["nodes_current"]?.arrayValue ?? []).compactMap(\.stringValue)
            var section: [String: Any] = [
                "name": issuer["name"]?.stringValue ?? "", "issuer": issuer["issuer"]?.stringValue ?? "",
                "version": issuer["version"]?.stringValue ?? "none published",
                "age": issuer["age_seconds"].flatMap { value -> String? in
                    if case .number(let seconds) = value { return String(format: "published %.0f s ago", seconds) }
                    return nil
                } ?? "never published",
                "kids": (issuer["kids"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                "current_count": current.count, "live": live.count, "csrf": user.session.csrfToken,
                "builtin": issuer["signing_keys"] != nil,
                "signing_keys": (issuer["signing_keys"]?.arrayValue ?? []).map { key in
                    ["kid": key["kid"]?.stringValue ?? "", "state": key["state"]?.stringValue ?? "", "alg": key["alg"]?.stringValue ?? ""]
                },
            ]
            if !current.isEmpty { section["current"] = current.joined(separator: ", ") }
            let behind = live.filter { !current.contains($0) }
            if !behind.isEmpty { section["behind"] = behind.joined(separator: ", ") }
            return section
        }
        var context: [String: Any] = ["issuers": sections]
        let query = FormEncoding.decode(request.uri.query ?? "") ?? [:]
        if let kid = query["rotated"] {
            context["notice"] = "Rotated: the new signing key is \(kid)" + (query["complete"] == "0" ? "; some gateways had not caught up when it began signing." : ".")
        }
        return pages.render("keys", title: "Keys", context, actor: user.actor, csrf: user.session.csrfToken)
    }

    private func rotate(_ name: String, _ request: Request, context: ControlRequestContext, _ user: Operator) async throws -> Response {
        _ = try await checkedForm(request, user, context: context)
        let result = try await api.audited("keys.rotate", target: name, actor: user.actor, from: context.peer, details: ["via": "console"]) {
            let server = try api.builtin(name)
            let result = try await api.ringCall { try await server.ring.rotate(trigger: "console") }
            return (result, ["kid": result.newKeyID, "previous_kid": result.previousKeyID ?? "-"])
        }
        return Self.redirect("/console/keys?rotated=\(FormEncoding.escape(result.newKeyID))&complete=\(result.laggards.isEmpty ? 1 : 0)")
    }

    // MARK: Audit

    private func auditPage(_ request: Request, _ user: Operator) async throws -> Response {
        let query = FormEncoding.decode(request.uri.query ?? "") ?? [:]
        var count = 100
        if let text = query["count"] {
            guard let number = Int(text), (1...1000).contains(number) else { throw APIError.invalid("count", "expected a number from 1 to 1000") }
            count = number
        }
        let entries = try await api.confirmed { try await api.audit.recent(count: count) }
        let rows: [[String: Any]] = entries.map { entry in
            let details = (entry["details"].flatMap { value -> [String: JSONValue]? in
                if case .object(let members) = value { return members }
                return nil
            } ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.stringValue ?? "")" }
            return [
                "at": entry["at_ms"]?.int64Value.map(Self.time) ?? "", "actor": entry["actor"]?.stringValue ?? "",
                "action": entry["action"]?.stringValue ?? "", "target": entry["target"]?.stringValue ?? "",
                "from": entry["from"]?.stringValue ?? "", "outcome": entry["outcome"]?.stringValue ?? "",
                "status": entry["status"]?.int64Value.map(String.init) ?? "", "details": details.joined(separator: ", "),
            ]
        }
        return pages.render("audit", title: "Audit log", ["count": count, "entries": rows], actor: user.actor, csrf: user.session.csrfToken)
    }

    /// Unix milliseconds as `2026-12-03 15:04:05` (UTC).
    static func time(_ millis: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}
