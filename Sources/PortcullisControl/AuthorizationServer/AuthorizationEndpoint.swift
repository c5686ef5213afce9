import Foundation
import Hummingbird
import Logging
import PortcullisCluster
import PortcullisJOSE

/// The authorization endpoint (RFC 6749 §4.1.1) and its login and consent pages: the
/// authorization code grant with PKCE (RFC 7636, `S256` only) as the OAuth 2.0 Security BCP
/// (RFC 9700) asks. Redirect URIs match a registered one byte for byte, and a request with a
/// wrong one is answered with an error page, never a redirect (§2.1, §4.1); `state` is required;
/// only `response_type=code` (no implicit grant, §2.1.2); the authorization response names the
/// issuer (`iss`, RFC 9207, §4.4). Signed-in sessions, codes, consent and throttling live in
/// Redis, and a form's session before sign-in is its cookie with a MAC under a key derived from
/// the cluster secret (`LoginSessionStore`), so every step may land on a different control plane.
final class AuthorizationEndpoint: Sendable {
    let config: AuthorizationServerConfig
    private let users: UserDirectory
    private let clients: [String: AuthorizationServerConfig.Client]
    private let codes: AuthorizationCodeStore
    let sessions: LoginSessionStore
    private let throttle: LoginThrottle
    private let pages = LoginPages()
    private let audit: AuditLog
    /// Users' own entries (sign-in, consent, sign-out), per user.
    private let userAudit: AuditActorLimiter
    private let metrics: ControlMetrics
    private let logger: Logger
    private let basePath: String
    /// The control plane's copy of the revocation list: a subject cut-off ("log out everywhere")
    /// ends the sign-in sessions begun before it.
    private let revocationList: RevocationFollower

    static let cookieName = "portcullis_session"

    init(config: AuthorizationServerConfig, users: UserDirectory, codes: AuthorizationCodeStore, sessions: LoginSessionStore,
         throttle: LoginThrottle, basePath: String, revocationList: RevocationFollower, audit: AuditLog, metrics: ControlMetrics, logger: Logger,
         userAudit: AuditActorLimiter = AuditActorLimiter()) {
        self.revocationList = revocationList
        self.userAudit = userAudit
        self.config = config
        self.users = users
        self.clients = Dictionary(uniqueKeysWithValues: config.clients.map { ($0.id, $0) })
        self.codes = codes
        self.sessions = sessions
        self.throttle = throttle
        self.basePath = basePath
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
    }

    /// Records a user's own action at the rate `userAudit` allows that user; an entry left out is
    /// counted.
    private func auditUser(_ entry: AuditLog.Entry) async {
        await userAudit.record(entry, in: audit, suppressed: metrics.auditSuppressed)
    }

    var authorizeAction: String { basePath + "/oauth2/authorize" }
    var consentAction: String { basePath + "/oauth2/consent" }
    var accountAction: String { basePath + "/oauth2/account" }

    /// A validated authorization request.
    struct AuthorizationRequest: Sendable {
        var client: AuthorizationServerConfig.Client
        var redirectURI: String
        var scopes: [String]
        var state: String
        var challenge: String

        /// The request as hidden form fields, so the login and consent forms carry it (and it is
        /// validated again when they come back).
        var hidden: [LoginPages.Hidden] {
            [.init(name: "response_type", value: "code"), .init(name: "client_id", value: client.id),
             .init(name: "redirect_uri", value: redirectURI), .init(name: "scope", value: scopes.joined(separator: " ")),
             .init(name: "state", value: state), .init(name: "code_challenge", value: challenge),
             .init(name: "code_challenge_method", value: "S256")]
        }
    }

    // MARK: Handlers

    /// GET: the start of a sign-in. A signed-in session goes straight to consent (or, when
    /// consent is remembered, back to the client with a code); otherwise the login page.
    func start(_ request: Request) async throws -> Response {
        guard let params = FormEncoding.decode(request.uri.query ?? "") else {
            return pages.error(title: "Invalid request", message: "The sign-in link is malformed or repeats a parameter. Go back to the application and try again.",
                               status: .badRequest)
        }
        let authorization: AuthorizationRequest
        switch validate(params) {
        case .success(let valid): authorization = valid
        case .failure(let answer): return answer.response
        }
        var setCookie: String?
        let session: LoginSessionStore.Session
        if let existing = try await cookieSession(request) {
            session = existing
        } else {
            session = sessions.anonymous()
            setCookie = cookie(session.id)
        }
        if let username = session.username, users.users[username] != nil {
            return withCookie(try await consentOrCode(session: session, username: username, authorization), setCookie)
        }
        return withCookie(pages.login(issuer: config.issuer, clientID: authorization.client.id, action: authorizeAction, csrf: session.csrfToken,
                                      hidden: authorization.hidden), setCookie)
    }

    /// POST from the login page.
    func login(_ request: Request, address: String, peer: String) async throws -> Response {
        let form: [String: String]
        let session: LoginSessionStore.Session
        switch try await checkedForm(request) {
        case .success(let pair): (form, session) = pair
        case .failure(let answer): return answer.response
        }
        let authorization: AuthorizationRequest
        switch validate(form) {
        case .success(let valid): authorization = valid
        case .failure(let answer): return answer.response
        }
        let username = form["username"] ?? ""
        let password = form["password"] ?? ""
        func again(_ message: String, _ status: HTTPResponse.Status) -> Response {
            pages.login(issuer: config.issuer, clientID: authorization.client.id, action: authorizeAction, csrf: session.csrfToken,
                        hidden: authorization.hidden, username: username, error: message, status: status)
        }
        guard !username.isEmpty, !password.isEmpty else { return again("Enter your username and your password.", .badRequest) }
        // Counted under the name as the users file spells it: the lookup takes canonically
        // equivalent spellings (a KELVIN SIGN for K, a decomposed é) for the same user, and
        // each spelling must not bring a count of its own.
        let counted = users.users[username]?.username ?? username
        if let wait = try await throttle.attempt(username: counted, address: address) {
            metrics.login(outcome: "throttled")
            let minutes = max(1, Int((wait.components.seconds + 59) / 60))
            var response = again("Too many failed sign-ins. Try again in \(minutes) minute\(minutes == 1 ? "" : "s").", .tooManyRequests)
            response.headers[.retryAfter] = String(max(1, wait.components.seconds))
            return response
        }
        guard let user = await users.authenticate(username: username, password: password) else {
            metrics.login(outcome: "failure")
            logger.info("sign-in failed", metadata: ["username": "\(username)", "from": "\(peer)"])
            return again("Wrong username or password.", .forbidden)
        }
        try await throttle.succeeded(username: counted, address: address)
        metrics.login(outcome: "success")
        // A new session id on sign-in: one planted in the browser before it is worth nothing after.
        try await sessions.delete(session.id)
        let signedIn = try await sessions.create(username: user.username, authTime: Int64(Date().timeIntervalSince1970))
        await auditUser(AuditLog.Entry(actor: "user:" + user.username, action: "oauth.login", target: "client:" + authorization.client.id,
                                       from: peer, outcome: "ok", status: 200))
        return withCookie(try await consentOrCode(session: signedIn, username: user.username, authorization), cookie(signedIn.id))
    }

    /// POST from the consent page.
    func consent(_ request: Request, peer: String) async throws -> Response {
        let form: [String: String]
        let session: LoginSessionStore.Session
        switch try await checkedForm(request) {
        case .success(let pair): (form, session) = pair
        case .failure(let answer): return answer.response
        }
        guard let username = session.username, users.users[username] != nil else {
            return pages.error(title: "Not signed in", message: "Your session has ended. Go back to the application and sign in again.", status: .forbidden)
        }
        let authorization: AuthorizationRequest
        switch validate(form) {
        case .success(let valid): authorization = valid
        case .failure(let answer): return answer.response
        }
        switch form["decision"] {
        case "allow":
            try await sessions.recordConsent(username: username, clientID: authorization.client.id, scopes: authorization.scopes)
            await auditUser(AuditLog.Entry(actor: "user:" + username, action: "oauth.consent", target: "client:" + authorization.client.id,
                                           from: peer, outcome: "ok", status: 303, details: ["scope": authorization.scopes.joined(separator: " ")]))
            return try await redirectWithCode(session: session, username: username, authorization)
        case "deny":
            return redirect(authorization.redirectURI, ["error": "access_denied", "error_description": "the user denied access",
                                                         "state": authorization.state])
        default:
            return pages.error(title: "Invalid request", message: "Choose Allow or Deny.", status: .badRequest)
        }
    }

    /// GET: the signed-in user's account page: the clients they allowed, each revocable, and
    /// sign-out.
    func account(_ request: Request) async throws -> Response {
        guard let session = try await cookieSession(request), let username = session.username else {
            return pages.error(title: "Not signed in", message: "You are not signed in here.", status: .forbidden)
        }
        return pages.account(username: username, consents: try await sessions.consents(username: username), action: accountAction,
                             csrf: session.csrfToken)
    }

    /// POST from the account page: `action=logout`, or `action=revoke` with `client_id` (which
    /// forgets the consent and revokes, through `revoke`, every token issued under it).
    func accountAction(_ request: Request, peer: String, revoke: (_ username: String, _ clientID: String) async throws -> Void) async throws -> Response {
        let form: [String: String]
        let session: LoginSessionStore.Session
        switch try await checkedForm(request) {
        case .success(let pair): (form, session) = pair
        case .failure(let answer): return answer.response
        }
        guard let username = session.username else {
            return pages.error(title: "Not signed in", message: "You are not signed in here.", status: .forbidden)
        }
        switch form["action"] {
        case "logout":
            try await sessions.delete(session.id)
            await auditUser(AuditLog.Entry(actor: "user:" + username, action: "oauth.logout", target: "session", from: peer, outcome: "ok", status: 200))
            var page = pages.error(title: "Signed out", message: "You are signed out.", status: .ok)
            page.headers[.setCookie] = "\(Self.cookieName)=; Path=\(basePath)/oauth2; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
            return page
        case "revoke":
            guard let clientID = form["client_id"], !clientID.isEmpty else {
                return pages.error(title: "Invalid request", message: "Say which application to revoke (client_id).", status: .badRequest)
            }
            // Only a registered client, or one the user's account lists (a signed consent, kept
            // after its client left the configuration): what a revocation writes to the signed
            // list every node holds must not be a name of the user's choosing.
            let listed = ExactMatch.client(clients, clientID) != nil ? true : try await sessions.consents(username: username).contains { ExactMatch.equal($0.clientID, clientID) }
            guard listed else {
                return pages.error(title: "Invalid request", message: "No application is registered here as that client_id.", status: .badRequest)
            }
            if let wait = try await throttle.attempt(revokingAs: username) {
                let minutes = max(1, Int((wait.components.seconds + 59) / 60))
                var page = pages.error(title: "Too many revocations",
                                       message: "You revoked access too often. Try again in \(minutes) minute\(minutes == 1 ? "" : "s").",
                                       status: .tooManyRequests)
                page.headers[.retryAfter] = String(max(1, wait.components.seconds))
                return page
            }
            try await revoke(username, clientID)
            return pages.account(username: username, consents: try await sessions.consents(username: username), action: accountAction,
                                 csrf: session.csrfToken, notice: "Access for \(clientID) revoked: its tokens are refused from now on.")
        default:
            return pages.error(title: "Invalid request", message: "Choose Sign out or Revoke access.", status: .badRequest)
        }
    }

    /// Runs a page handler; when Redis (sessions, codes, throttling) fails, the person gets a
    /// page saying so and to retry (503, `Retry-After`), not an internal error.
    func guarded(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch {
            logger.error("sign-in pages: the cluster store failed", metadata: ["error": "\(error)"])
            var page = pages.error(title: "Temporarily unavailable",
                                   message: "The sign-in service cannot reach its store right now. Try again in a moment.", status: .serviceUnavailable)
            page.headers[.retryAfter] = "1"
            return page
        }
    }

    // MARK: Steps

    private func consentOrCode(session: LoginSessionStore.Session, username: String, _ authorization: AuthorizationRequest) async throws -> Response {
        if let consented = try await sessions.consentedScopes(username: username, clientID: authorization.client.id),
           Set(authorization.scopes).isSubset(of: consented) {
            return try await redirectWithCode(session: session, username: username, authorization)
        }
        return pages.consent(issuer: config.issuer, clientID: authorization.client.id, username: username, scopes: authorization.scopes,
                             action: consentAction, csrf: session.csrfToken, hidden: authorization.hidden)
    }

    private func redirectWithCode(session: LoginSessionStore.Session, username: String, _ authorization: AuthorizationRequest) async throws -> Response {
        let code = try await codes.issue(AuthorizationCodeStore.Grant(
            clientID: authorization.client.id, redirectURI: authorization.redirectURI, username: username, scope: authorization.scopes,
            challenge: authorization.challenge, authTime: session.authTime ?? Int64(Date().timeIntervalSince1970)))
        return redirect(authorization.redirectURI, ["code": code, "state": authorization.state])
    }

    /// A failure answered either with a page (the redirect URI cannot be trusted) or with a
    /// redirect carrying the OAuth error (RFC 6749 §4.1.2.1).
    struct Answer: Error {
        var response: Response
    }

    /// RFC 6749 §4.1.1 and §4.1.2.1, RFC 7636 §4.3, RFC 9700 §2.1.
    func validate(_ params: [String: String]) -> Result<AuthorizationRequest, Answer> {
        guard let clientID = params["client_id"], !clientID.isEmpty, let client = ExactMatch.client(clients, clientID) else {
            return .failure(Answer(response: pages.error(title: "Unknown application",
                                                         message: "The application that sent you here is not registered with this sign-in service (client_id).",
                                                         status: .badRequest)))
        }
        guard client.grantTypes.contains("authorization_code") else {
            return .failure(Answer(response: pages.error(title: "Sign-in not allowed",
                                                         message: "The application \(clientID) may not ask users to sign in (unauthorized_client).",
                                                         status: .badRequest)))
        }
        guard let redirectURI = params["redirect_uri"], ExactMatch.contains(client.redirectURIs, redirectURI) else {
            return .failure(Answer(response: pages.error(title: "Invalid redirect URI",
                                                         message: "The application asked to send you back to an address that is not registered for it (redirect_uri), so you are not sent there.",
                                                         status: .badRequest)))
        }
        let state = params["state"] ?? ""
        func fail(_ code: String, _ description: String) -> Result<AuthorizationRequest, Answer> {
            var fields = ["error": code, "error_description": ErrorDescription.sanitized(description)]
            if !state.isEmpty { fields["state"] = state }
            return .failure(Answer(response: redirect(redirectURI, fields)))
        }
        guard let responseType = params["response_type"], responseType == "code" else {
            return fail(params["response_type"] == nil ? "invalid_request" : "unsupported_response_type",
                        "response_type must be code (the implicit grant is not offered)")
        }
        guard !state.isEmpty else { return fail("invalid_request", "state is required") }
        // A client asking for the code in a fragment or a form post would look for it there:
        // refused rather than answered in the query it did not ask for.
        guard params["response_mode"] == nil || params["response_mode"] == "query" else {
            return fail("invalid_request", "response_mode must be query (the code is sent in the redirect's query)")
        }
        guard params["code_challenge_method"] == "S256" else {
            return fail("invalid_request", "PKCE is required with code_challenge_method=S256 (plain is not accepted)")
        }
        guard let challenge = params["code_challenge"], challenge.count == 43, Base64URL.decode(challenge)?.count == 32 else {
            return fail("invalid_request", "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)")
        }
        let scopes: [String]
        do {
            scopes = try AuthorizationServer.scopes(requested: params["scope"].flatMap { $0.isEmpty ? nil : $0 }, allowed: client.scopes)
        } catch {
            return fail(error.code, error.message)
        }
        return .success(AuthorizationRequest(client: client, redirectURI: redirectURI, scopes: scopes, state: state, challenge: challenge))
    }

    /// The form and the session it belongs to; anything without a session cookie or with a CSRF
    /// token other than the session's is refused with a page.
    private func checkedForm(_ request: Request) async throws -> Result<([String: String], LoginSessionStore.Session), Answer> {
        let form: [String: String]
        do {
            form = try await RequestInput.form(request)
        } catch let error as APIError {
            return .failure(Answer(response: pages.error(title: "Invalid request", message: error.message, status: error.status)))
        }
        guard let session = try await cookieSession(request), let presented = form["csrf_token"],
              PasswordHash.constantTimeEqual(Array(presented.utf8), Array(session.csrfToken.utf8)) else {
            return .failure(Answer(response: pages.error(
                title: "Form expired", message: "This form has expired or was not sent from this site, so it was not accepted. Go back to the application and start again.",
                status: .forbidden)))
        }
        return .success((form, session))
    }

    private func cookieSession(_ request: Request) async throws -> LoginSessionStore.Session? {
        guard let id = LoginSessionStore.cookie(Self.cookieName, in: request.headers), let session = try await sessions.lookup(id) else { return nil }
        // A control plane whose copy of the revocation list has not synced yet knows no cut-off:
        // a signed-in session counts as none until it has (the user signs in again).
        if session.username != nil, !revocationList.isSynced { return nil }
        if let username = session.username, let authTime = session.authTime,
           let cutoff = revocationList.set.cutoffs(issuer: config.issuer, subject: username, clientID: nil).subject,
           authTime * 1000 < cutoff {
            return nil
        }
        return session
    }

    /// `Secure` always (the issuer is https, or http on loopback where browsers keep Secure
    /// cookies); `HttpOnly` (no script reads it); `SameSite=Lax` (sent on the top-level GET from
    /// the client's site, not on cross-site POSTs).
    private func cookie(_ id: String) -> String {
        "\(Self.cookieName)=\(id); Path=\(basePath)/oauth2; Secure; HttpOnly; SameSite=Lax"
    }

    private func withCookie(_ response: Response, _ cookie: String?) -> Response {
        guard let cookie else { return response }
        var response = response
        response.headers[.setCookie] = cookie
        return response
    }

    /// 303 to the client's redirect URI with `fields` and `iss` (RFC 9207) added to its query.
    private func redirect(_ uri: String, _ fields: [String: String]) -> Response {
        var all = fields
        all["iss"] = config.issuer
        let query = all.sorted { $0.key < $1.key }.map { FormEncoding.escape($0.key) + "=" + FormEncoding.escape($0.value) }.joined(separator: "&")
        let location = uri + (uri.contains("?") ? "&" : "?") + query
        return Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store", .contentLength: "0"])
    }
}
