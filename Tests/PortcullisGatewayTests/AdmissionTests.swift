@testable import PortcullisGateway
import Foundation
import NIOCore
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE
import PortcullisObservability
import PortcullisTestSupport
import Testing

/// The admission step on its own, in process: real config parsing, route table, JWT verifier,
/// revocation set and local rate limiter, and no network. What each protocol then writes is
/// tested against real gateway processes (`GatewayProxyTests`, `EdgeAttackTests`).
@Suite("admission")
struct AdmissionTests {
    let issuer: TestIssuer
    let revocations: RevocationSet
    let admission: Admission
    let table: RouteTable

    init() throws {
        let revocations = RevocationSet()
        self.revocations = revocations
        let fixture = try InProcessGateway(revocations: revocations, yaml: """
            rate_limits:
              - {name: one, key: subject, limit: 1, window: 60s}
            routes:
              - {name: public, path_prefix: /public, upstream: {targets: [127.0.0.1:1]}}
              - name: orders
                path_prefix: /orders
                methods: [GET, POST]
                max_body_bytes: 10
                upstream: {targets: [127.0.0.1:1]}
                auth: {type: jwt, scopes: {any_of: [orders:read]}}
              - {name: limited, path_prefix: /limited, upstream: {targets: [127.0.0.1:1]}, auth: {type: jwt}, rate_limit: one}
              - {name: mtls, path_prefix: /mtls, upstream: {targets: [127.0.0.1:1]}, require_client_certificate: true, auth: {type: jwt}}
            """)
        issuer = fixture.issuer
        table = fixture.table
        admission = Admission(gateway: fixture.context, client: HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false))
    }

    /// The outcome for a request; `certificate` counts how often the client certificate was asked for.
    func admit(_ method: HTTPMethod = .GET, _ uri: String, token: String? = nil, headers extra: [(String, String)] = [],
               certificate: inout Int) -> (Admission.Decision, RequestLog) {
        var headers = HTTPHeaders([("Host", "gw.test")] + extra)
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
        var log = RequestLog(requestID: "r", method: method.rawValue, target: uri, start: .now())
        let decision = admission.admit(head, facts: RequestHeadFacts(head.headers), table: table, log: &log) {
            certificate += 1
            return nil
        }
        return (decision, log)
    }

    func admit(_ method: HTTPMethod = .GET, _ uri: String, token: String? = nil, headers: [(String, String)] = []) -> (Admission.Decision, RequestLog) {
        var asked = 0
        return admit(method, uri, token: token, headers: headers, certificate: &asked)
    }

    func refusal(_ decision: Admission.Decision) -> ErrorResponse? {
        if case .refused(let response, _) = decision { return response }
        return nil
    }

    @Test("a valid token on a JWT route is admitted with its identity, the route and the target the route matched")
    func admitsValidToken() throws {
        let (decision, log) = admit(.GET, "/orders/%7Ealice/x?q=1", token: try issuer.token(sub: "alice"))
        guard case .admitted(let admitted) = decision else { Issue.record("refused: \(String(describing: refusal(decision)))"); return }
        #expect(admitted.route.config.name == "orders")
        #expect(admitted.identity?.subject == "alice")
        #expect(admitted.target.path == "/orders/~alice/x")
        #expect(admitted.target.uri == "/orders/~alice/x?q=1")
        #expect(admitted.responseHeaders == nil)
        #expect(log.route == "orders" && log.subject == "alice")
    }

    @Test("an overloaded node answers every new request 503 overloaded with Retry-After: 1 before routing or authentication, counted, and admits again once it is not")
    func overloadedNodeRefusesNewRequests() throws {
        let token = try issuer.token(sub: "alice")
        admission.gateway.overload.set(true)
        // Without a token (a 401 otherwise), with a bad one, on a public route, on no route (a 404 otherwise).
        for (uri, token) in [("/orders/1", nil), ("/orders/1", "not.a.jwt"), ("/public/x", nil), ("/nowhere", token)] {
            let response = refusal(admit(.GET, uri, token: token).0)
            #expect(response?.status == .serviceUnavailable, "\(uri)")
            #expect(response?.error == "overloaded")
            #expect(response?.headers.first(name: "Retry-After") == "1")
            #expect(response?.closesConnection == true)
        }
        let exposition = String(decoding: Exposition.render(admission.gateway.metrics.registry), as: UTF8.self)
        #expect(PrometheusText.sample(exposition, #"portcullis_overload_refused_total{what="request"}"#) == 4)
        admission.gateway.overload.set(false)
        guard case .admitted = admit(.GET, "/orders/1", token: token).0 else { Issue.record("refused once no longer overloaded"); return }
    }

    @Test("a missing token is a 401 with an RFC 6750 challenge; a token without the scope is a 403")
    func refusesWithoutTokenOrScope() throws {
        let missing = refusal(admit(.GET, "/orders/1").0)
        #expect(missing?.status == .unauthorized)
        #expect(missing?.headers.first(name: "WWW-Authenticate")?.hasPrefix("Bearer realm=\"tests\"") == true)
        let unscoped = refusal(admit(.GET, "/orders/1", token: try issuer.token(scope: "other")).0)
        #expect(unscoped?.status == .forbidden)
        #expect(unscoped?.error == "insufficient_scope")
    }

    @Test("a token revoked in the cluster's set is refused, and its twin with another jti is not")
    func refusesRevokedToken() throws {
        let token = try issuer.token(sub: "bob")
        guard case .admitted(let first) = admit(.GET, "/orders/1", token: token).0, let jti = first.identity?.jwtID else {
            Issue.record("the token should pass before its revocation"); return
        }
        let now = Int64(Date().timeIntervalSince1970)
        revocations.apply(Revocation(id: UUID().uuidString, operation: .add, kind: .jti, value: jti, issuer: nil, until: now + 600,
                                     createdAtMillis: now * 1000, actor: "test", reason: nil, lifts: nil), now: now)
        let (decision, log) = admit(.GET, "/orders/1", token: token)
        #expect(refusal(decision)?.status == .unauthorized)
        #expect(log.reason == "revoked")
        guard case .admitted = admit(.GET, "/orders/1", token: try issuer.token(sub: "bob")).0 else {
            Issue.record("another token of the same subject is not revoked"); return
        }
    }

    /// The verified-token cache answers a token seen before without verifying it again; the
    /// revocation check must still run on its answer.
    @Test("a token answered from the verified-token cache is refused once revoked, by jti and by subject")
    func refusesRevokedCachedToken() throws {
        let cache = VerifiedTokenCache(capacity: 100)
        let revocations = RevocationSet()
        let fixture = try InProcessGateway(revocations: revocations, cache: cache, yaml: """
            routes:
              - {name: orders, path_prefix: /orders, upstream: {targets: [127.0.0.1:1]}, auth: {type: jwt}}
            """)
        let admission = Admission(gateway: fixture.context, client: HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false))
        func admit(_ token: String) -> (Admission.Decision, RequestLog) {
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/orders/1",
                                       headers: ["Host": "gw.test", "Authorization": "Bearer \(token)"])
            var log = RequestLog(requestID: "r", method: "GET", target: "/orders/1", start: .now())
            return (admission.admit(head, facts: RequestHeadFacts(head.headers), table: fixture.table, log: &log) { nil }, log)
        }
        let now = Int64(Date().timeIntervalSince1970)
        func revoke(_ kind: Revocation.Kind, _ value: String) {
            revocations.apply(Revocation(id: UUID().uuidString, operation: .add, kind: kind, value: value, issuer: nil, until: now + 600,
                                         createdAtMillis: (now + 1) * 1000, actor: "test", reason: nil, lifts: nil), now: now)
        }
        for (kind, subject) in [(Revocation.Kind.jti, "carol"), (.subject, "dave")] {
            let token = try fixture.issuer.token(sub: subject)
            guard case .admitted(let admitted) = admit(token).0, let jti = admitted.identity?.jwtID else {
                Issue.record("\(subject)'s token should pass before its revocation"); return
            }
            let hits = cache.hits
            guard case .admitted = admit(token).0 else { Issue.record("the second use should pass too"); return }
            #expect(cache.hits == hits + 1, "the second use should be answered from the cache")
            revoke(kind, kind == .jti ? jti : subject)
            let (decision, log) = admit(token)
            #expect(refusal(decision)?.status == .unauthorized, "\(kind): a cached token passed after its revocation")
            #expect(log.reason == "revoked")
        }
    }

    @Test("a CONNECT is a 405 before anything else is looked at, in origin or authority form")
    func refusesConnect() {
        for target in ["/orders/1", "gw.test:443"] {
            let refused = refusal(admit(.CONNECT, target).0)
            #expect(refused?.status == .methodNotAllowed, "\(target)")
            #expect(refused?.error == "method_not_allowed")
        }
    }

    @Test("the checks run in order: a bad target is a 400 and an over-long declared body a 413, before any token is looked at")
    func refusalsBeforeAuthentication() throws {
        #expect(refusal(admit(.GET, "/orders/../admin").0)?.status == .badRequest)
        #expect(refusal(admit(.GET, "/orders/1", headers: [("Host", "other.test")]).0)?.status == .badRequest, "two Host headers")
        let (tooLarge, log) = admit(.POST, "/orders/1", headers: [("Content-Length", "11")])
        #expect(refusal(tooLarge)?.status == .payloadTooLarge)
        #expect(log.subject == nil)
    }

    @Test("a method the route does not list is a 405 naming the allowed ones; an unknown path a 404")
    func methodAndPath() {
        let notAllowed = refusal(admit(.DELETE, "/orders/1").0)
        #expect(notAllowed?.status == .methodNotAllowed)
        #expect(notAllowed?.headers.first(name: "Allow") == "GET, POST")
        #expect(refusal(admit(.GET, "/nowhere").0)?.status == .notFound)
    }

    @Test("the rate limit counts only authenticated requests, and refuses the one over the limit with Retry-After")
    func rateLimit() throws {
        // A refused authentication must not spend the subject's budget.
        #expect(refusal(admit(.GET, "/limited", token: "not-a-token").0)?.status == .unauthorized)
        let token = try issuer.token(sub: "carol")
        guard case .admitted(let first) = admit(.GET, "/limited", token: token).0 else { Issue.record("first request refused"); return }
        #expect(first.responseHeaders?.first(name: "RateLimit")?.hasPrefix(#""one";r=0;t="#) == true)
        let (second, log) = admit(.GET, "/limited", token: token)
        let response = refusal(second)
        #expect(response?.status == .tooManyRequests)
        #expect(response?.headers.first(name: "Retry-After") != nil)
        #expect(log.reason == "rate_limited")
    }

    @Test("rate-limit fields: the draft's structured fields by default, the earlier drafts' four fields under legacy")
    func rateLimitFieldForms() throws {
        let policy = try #require(table.routes.first { $0.config.name == "limited" }?.rateLimit)
        let decision = RateLimitDecision(allowed: true, limit: 1, remaining: 0, resetSeconds: 17)
        let draft = RateLimitFields.fields(policy: policy, decision: decision, form: .draft)
        #expect(draft.map { "\($0.name): \($0.value)" } == [#"RateLimit-Policy: "one";q=1;w=60"#, #"RateLimit: "one";r=0;t=17"#])
        let legacy = RateLimitFields.fields(policy: policy, decision: decision, form: .legacy)
        #expect(legacy.map { "\($0.name): \($0.value)" } == ["RateLimit-Policy: 1;w=60", "RateLimit-Limit: 1", "RateLimit-Remaining: 0", "RateLimit-Reset: 17"])
        // A policy name is written as an RFC 8941 sf-string whatever it holds.
        #expect(RateLimitFields.sfString(#"a"b\c"#) == #""a\"b\\c""#)
        #expect(RateLimitFields.sfString("é\n") == #""???""#)
    }

    @Test("a route requiring a client certificate refuses a connection without one before verifying its token")
    func clientCertificateRequired() throws {
        var asked = 0
        let (decision, log) = admit(.GET, "/mtls", token: try issuer.token(), certificate: &asked)
        #expect(refusal(decision)?.status == .forbidden)
        #expect(refusal(decision)?.error == "client_certificate_required")
        #expect(asked == 1)
        #expect(log.subject == nil)
        // Routes that need none never ask (a TLS lookup per request otherwise).
        _ = admit(.GET, "/orders/1", token: try issuer.token(), certificate: &asked)
        #expect(asked == 1)
    }
}
