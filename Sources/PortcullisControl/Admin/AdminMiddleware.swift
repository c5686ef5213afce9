import Hummingbird
import HTTPTypes

/// In front of every admin route: counts the request, requires what `admin_auth` asks for — a
/// bearer token, a verified client certificate, or both or either (except
/// for `/metrics` and `/healthz`, which hold no secrets and are for scrapers and probes, and the
/// operator console under `/console`, which signs people in itself), and
/// renders errors as JSON. Every refusal is counted; a refused mutating call (anything but
/// GET/HEAD) is audited as such, at the rate `failureAudit` allows.
///
/// A mutating `/v1` call a web page made is refused (403 `cross_site_request`): one with an
/// `Origin` field, or with `Sec-Fetch-Site` other than `none` (typed, or a tool). A browser holding
/// an admin client certificate — the console's sign-in needs one under `admin_auth: certificate`
/// — presents it to any page's request, so a plain form POST (no script, no preflight) could
/// rotate and retire the signing key with it, ending every outstanding token.
/// Browsers state both fields on such requests; API clients (curl, `portcullis admin`, scripts)
/// send neither. The console's own changes go through its forms, which carry their CSRF token.
struct AdminMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext

    /// Credentials and `admin_auth`, read once per call (a reload replaces them).
    let settings: ReloadableAdminSettings
    let metrics: ControlMetrics
    let audit: AuditLog
    let failureAudit: AuditFailureLimiter
    static let openPaths: Set<String> = ["/metrics", "/healthz"]
    // A constant name: the initialiser fails only for names that are not tokens.
    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let response: Response
        if !Self.openPaths.contains(request.uri.path) && !OperatorConsole.owns(request.uri.path) {
            let settings = settings.current
            let mode = settings.mode, authenticator = settings.authenticator
            let header = request.headers[.authorization]
            let subject = mode.acceptsCertificates ? await context.verifiedClientCertificateSubject() : nil
            let token = mode == .certificate ? nil : authenticator.authenticate(authorization: header)
            guard settings.admits(token: token, subject: subject) else {
                var error: APIError
                if mode == .certificate || (mode == .tokenAndCertificate && subject == nil) {
                    error = APIError(.unauthorized, "unauthorized", "a client certificate signed by the admin client CA is required")
                } else {
                    error = APIError(.unauthorized, "unauthorized",
                                     header == nil ? "an admin bearer token is required (Authorization: Bearer <token>)" : "the admin token is not valid")
                    error.headers[.wwwAuthenticate] = header == nil ? "Bearer realm=\"portcullis-admin\"" : "Bearer realm=\"portcullis-admin\", error=\"invalid_token\""
                }
                let denied = try error.response(from: request, context: context)
                let presented = header == nil ? "none" : "invalid"
                metrics.adminAuthFailure(credential: presented)
                if Self.isChange(request.method) {
                    await auditRefusal(request, context: context, actor: subject ?? "-", outcome: "unauthorized", status: 401, details: ["credential": presented])
                }
                metrics.adminRequest(method: request.method.rawValue, route: "unauthenticated", status: Int(denied.status.code))
                return denied
            }
            context.certificateSubject = subject
            context.credential = token
            if Self.isChange(request.method), Self.madeByWebPage(request.headers) {
                let refused = try APIError(.forbidden, "cross_site_request",
                                           "admin API changes are not taken from web pages (Origin or Sec-Fetch-Site was sent); use the console or an API client")
                    .response(from: request, context: context)
                metrics.adminAuthFailure(credential: "cross_site")
                await auditRefusal(request, context: context, actor: context.actor, outcome: "cross_site_request", status: 403,
                                   details: ["origin": request.headers[.origin] ?? "-", "sec_fetch_site": request.headers[values: Self.secFetchSite].first ?? "-"])
                metrics.adminRequest(method: request.method.rawValue, route: "cross_site", status: 403)
                return refused
            }
        }
        response = try await ErrorMiddleware().handle(request, context: context, next: next)
        metrics.adminRequest(method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: Int(response.status.code))
        return response
    }

    /// Anything but GET and HEAD: what the audit records and web pages may not ask for.
    static func isChange(_ method: HTTPRequest.Method) -> Bool {
        method != .get && method != .head
    }

    /// Audits a refused change at the rate `failureAudit` allows; an entry left out is counted.
    private func auditRefusal(_ request: Request, context: Context, actor: String, outcome: String, status: Int, details: [String: String]) async {
        switch failureAudit.admit() {
        case .record(let suppressedBefore):
            var details = details
            if suppressedBefore > 0 { details["suppressed_before"] = String(suppressedBefore) }
            await audit.record(AuditLog.Entry(actor: actor, action: "\(request.method.rawValue) \(request.uri.path)", target: "-",
                                              from: context.peer, outcome: outcome, status: status, details: details))
        case .suppress:
            metrics.auditSuppressed.increment()
        }
    }

    /// Whether a browser says a web page made the request: an `Origin` field (sent on every
    /// cross-origin request and on same-origin POSTs), or `Sec-Fetch-Site` other than `none`.
    static func madeByWebPage(_ headers: HTTPFields) -> Bool {
        if headers[.origin] != nil { return true }
        let site = headers[values: Self.secFetchSite]
        return site.contains { $0.lowercased() != "none" }
    }
}
