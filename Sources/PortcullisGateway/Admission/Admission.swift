import NIOHTTP1
import PortcullisJOSE

/// Whether a request may pass, decided from its head alone and the same for every protocol that
/// carries one: the node's overload (`MemoryGuard`), the head's own checks (`checkHead`), a CORS
/// preflight (answered by the gateway), the route, the declared body size, the client certificate,
/// authentication (token, revocation, scopes, claim rules) and the rate limit — in that order, the
/// first refusal wins. On a route with `cors`, refusals and admitted requests carry the route's
/// CORS response fields. It does no I/O and writes nothing: the protocol's handler answers a
/// refusal or forwards the admitted request its own way. It counts its decisions in the metrics
/// and fills in the request's log.
///
/// One per connection (what it holds is the connection's); the route table is passed per request,
/// because a reload may replace it between two requests of one connection.
struct Admission {
    let gateway: GatewayContext
    let client: HeaderRewriter.ClientInfo

    /// A request that may be forwarded.
    struct Admitted {
        let route: CompiledRoute
        /// The checked, normalised target: the path the route matched and the upstream receives.
        let target: RequestTarget
        /// The verified token, nil on a route without authentication.
        let identity: VerifiedToken?
        /// Fields the gateway adds to the response: `RateLimit-*` on a rate-limited route, the
        /// CORS fields on a route with `cors`.
        let responseHeaders: HTTPHeaders?
        /// Whether it was admitted on the strength of the connection's client certificate (its
        /// route requires one, its token is bound to one, or the listener required one of every
        /// connection): a long-lived session it opens ends when a reload narrows the trust that
        /// verified the certificate (`LiveSessions.clientTrustReplaced`).
        let reliesOnClientCertificate: Bool
    }

    enum Decision {
        case admitted(Admitted)
        /// The gateway answers `response` itself; `metrics` are those of the route it matched (or
        /// of unmatched requests).
        case refused(ErrorResponse, metrics: RouteMetrics)
    }

    /// Decides on `head`. `clientCertificate` gives the SHA-256 of the connection's verified
    /// client certificate; it is asked only when a route or a token needs it. Always inlined: its
    /// caller is the request path, and returning the decision through a call copied (retained and
    /// released) each of its references once more per request.
    @inline(__always)
    func admit(_ head: HTTPRequestHead, facts: RequestHeadFacts, table: RouteTable, log: inout RequestLog,
               clientCertificate: () -> [UInt8]?) -> Decision {
        log.host = facts.host
        // Before any refusal, so that every access-log line names the client.
        let clientAddress = client.requestAddress(head.headers)
        log.client = clientAddress
        // Short of memory (`MemoryGuard`), the node takes nothing new, and ends the connection so
        // that a client retrying goes to another node; what it has admitted goes on.
        if gateway.overload.isSet {
            gateway.metrics.overloadRefusedRequests.increment()
            var response = ErrorResponse(status: .serviceUnavailable, error: "overloaded", description: "the gateway is short of memory; retry shortly")
            response.headers.add(name: "Retry-After", value: "1")
            response.closesConnection = true
            return .refused(response, metrics: gateway.unmatchedRoute)
        }
        // Tracing off, a request's tracing work is this branch and nil checks of `log.trace`.
        if let tracing = gateway.tracing { log.trace = tracing.startRequest(traceparent: facts.traceparent, headers: head.headers) }
        // A CONNECT asks for a tunnel, which the gateway does not open, over HTTP/1.1 or HTTP/2
        // (`HTTP2HeaderBlocks` hands a plain one on in authority form). The HTTP/1.1 decoder reads
        // what follows a CONNECT as tunnel bytes, never a body: forwarding one with a
        // `Content-Length` would leave the upstream reading the next client's request as it.
        if head.method == .CONNECT {
            return .refused(ErrorResponse(status: .methodNotAllowed, error: "method_not_allowed", description: "the gateway does not open CONNECT tunnels"),
                            metrics: gateway.unmatchedRoute)
        }
        let target: RequestTarget
        switch Self.checkHead(head, facts: facts, policy: table.request) {
        case .success(let checked):
            target = checked
        case .failure(let refusal):
            return .refused(ErrorResponse(status: .badRequest, error: "invalid_request", description: refusal.description),
                            metrics: gateway.unmatchedRoute)
        }
        // RFC 9112 §6.1: a transfer coding the gateway does not apply or remove (it re-frames
        // the body in chunks) cannot be passed on.
        if !facts.transferEncodingOnlyChunked {
            return .refused(ErrorResponse(status: .notImplemented, error: "not_implemented", description: "the request's Transfer-Encoding names a coding other than chunked"),
                            metrics: gateway.unmatchedRoute)
        }
        if let answer = Self.corsPreflight(head, target: target, facts: facts, table: table, log: &log) { return answer }
        let route: CompiledRoute
        switch table.router.match(host: HostHeader.name(facts.host), path: target.path, method: head.method.rawValue) {
        case .matched(let matched):
            route = matched
        case .notFound:
            return .refused(ErrorResponse(status: .notFound, error: "not_found", description: "no route matches this request"),
                            metrics: gateway.unmatchedRoute)
        case .methodNotAllowed(let allowed):
            var response = ErrorResponse(status: .methodNotAllowed, error: "method_not_allowed", description: "this route does not accept \(head.method.rawValue)")
            response.headers.add(name: "Allow", value: allowed.joined(separator: ", "))
            return .refused(response, metrics: gateway.unmatchedRoute)
        }
        if route.config.stripPrefix, Self.cutLeavesDotSegment(target.path, prefix: route.config.pathPrefix) {
            return .refused(ErrorResponse(status: .badRequest, error: "invalid_request",
                                          description: "the request path has a dot segment (. or ..) once the route's prefix is cut"),
                            metrics: route.metrics)
        }
        if let overrides = Self.methodOverrides(facts.methodOverrides, uri: head.uri),
           let refusal = Self.refuseOverride(overrides, head: head, host: facts.host, path: target.path, route: route, router: table.router) {
            return .refused(refusal, metrics: route.metrics)
        }
        log.route = route.config.name
        let cors = route.cors?.responseFields(head.headers)

        if facts.upgradesToWebSocket {
            guard route.config.websocket != nil else {
                return .refused(ErrorResponse(status: .forbidden, error: "websocket_not_enabled", description: "this route does not accept WebSocket upgrades"),
                                metrics: route.metrics)
            }
            guard head.method == .GET, head.version == .http1_1 || facts.extendedConnect else {
                return .refused(ErrorResponse(status: .badRequest, error: "invalid_request",
                                              description: "a WebSocket upgrade is a GET over HTTP/1.1 or an extended CONNECT over HTTP/2"),
                                metrics: route.metrics)
            }
        }

        if let length = facts.contentLength, length > route.config.maxBodyBytes {
            return .refused(ErrorResponse(status: .payloadTooLarge, error: "payload_too_large", description: "the request body exceeds \(route.config.maxBodyBytes) bytes")
                                .adding(cors), metrics: route.metrics)
        }

        if route.config.requireClientCertificate, clientCertificate() == nil {
            return .refused(ErrorResponse(status: .forbidden, error: "client_certificate_required",
                                          description: "this route needs a client certificate the gateway verified").adding(cors),
                            metrics: route.metrics)
        }

        var identity: VerifiedToken?
        if let policy = route.jwtAuth {
            guard let authenticator = table.authenticator else {
                // Unreachable with a validated config (jwt routes require issuers); fail closed.
                return .refused(ErrorResponse(status: .serviceUnavailable, error: "temporarily_unavailable", description: "no issuers configured").adding(cors),
                                metrics: route.metrics)
            }
            if BearerExtractor.queryNamesAccessToken(head.uri) {
                let failure = AuthFailure(status: .badRequest, errorCode: "invalid_request",
                                          description: "a bearer token goes in the Authorization header only, not in an access_token query parameter",
                                          reason: "token_in_query", scope: nil)
                log.reason = failure.reason
                route.metrics.authRejected(failure.reason, client: nil)
                return .refused(ErrorResponse(failure, realm: table.realm).adding(cors), metrics: route.metrics)
            }
            let spanStart = log.trace?.childStart
            switch authenticator.authenticate(head.headers, policy: policy, clientCertificate: clientCertificate) {
            case .success(let token):
                if let spanStart { log.trace?.recordAuthentication(startedAt: spanStart, rejection: nil) }
                identity = token
                log.subject = token.subject
                log.clientID = token.clientID
                route.metrics.authAccepted()
            case .failure(let failure):
                if let spanStart { log.trace?.recordAuthentication(startedAt: spanStart, rejection: failure.reason) }
                log.reason = failure.reason
                route.metrics.authRejected(failure.reason, client: failure.client)
                return .refused(ErrorResponse(failure, realm: table.realm).adding(cors), metrics: route.metrics)
            }
        }

        var rateLimitHeaders: HTTPHeaders?
        if let policy = route.rateLimit {
            if case .header(let name) = policy.key,
               RateLimitKey.isRepeated(name, in: head.headers, underscoresAsDashes: table.request.headersWithUnderscores == .allow) {
                // Counted by one field and forwarded with both, the request would spend a key of
                // its choosing while an upstream reading the last field (or the joined list)
                // takes it as another's.
                log.reason = "invalid_request"
                let description = "the request has more than one \(name) field; rate limit '\(policy.name)' counts by one"
                return .refused(ErrorResponse(status: .badRequest, error: "invalid_request", description: description).adding(cors), metrics: route.metrics)
            }
            let key = RateLimitKey.value(for: policy, route: route.config.name, identity: identity, headers: head.headers, clientAddress: clientAddress)
            let spanStart = log.trace?.childStart
            let decision = gateway.rateLimiter.acquire(policy: policy, key: key, client: { RateLimitKey.client(clientAddress, policy: policy) })
            if let spanStart {
                log.trace?.recordRateLimit(startedAt: spanStart, policy: policy.name, allowed: decision.allowed, remaining: decision.remaining)
            }
            gateway.metrics.rateLimitDecision(policy: policy.name, allowed: decision.allowed, overflowed: decision.overflowed)
            let headers = RateLimitFields.fields(policy: policy, decision: decision, form: table.request.rateLimitHeaders)
            guard decision.allowed else {
                log.reason = "rate_limited"
                var response = ErrorResponse(status: .tooManyRequests, error: "rate_limited", description: "rate limit '\(policy.name)' exceeded")
                response.headers = headers
                response.headers.add(name: "Retry-After", value: String(max(1, decision.resetSeconds)))
                return .refused(response.adding(cors), metrics: route.metrics)
            }
            rateLimitHeaders = headers
        }

        if facts.hasAmbiguousNames, table.request.headersWithUnderscores == .drop { gateway.metrics.underscoredFieldsDropped.increment() }
        var responseHeaders = rateLimitHeaders
        if let cors {
            if responseHeaders == nil { responseHeaders = cors } else { responseHeaders?.add(contentsOf: cors) }
        }
        var reliesOnCertificate = route.config.requireClientCertificate || client.certificateRequired
        if case .certificate = identity?.confirmation { reliesOnCertificate = true }
        return .admitted(Admitted(route: route, target: target, identity: identity, responseHeaders: responseHeaders,
                                  reliesOnClientCertificate: reliesOnCertificate))
    }

    /// The method overrides a request carries: its override fields' values and its `_method`
    /// query parameters (Symfony and Laravel with overrides on, Express's
    /// `methodOverride('_method')`), the latter percent-decoded; nil when it carries none. A
    /// target with no `method` or `%` in its query is not parsed.
    static func methodOverrides(_ fields: [String]?, uri: String) -> [String]? {
        var found = fields
        let bytes = uri.utf8
        guard let mark = bytes.firstIndex(of: UInt8(ascii: "?")) else { return found }
        let query = bytes[bytes.index(after: mark)...]
        guard query.contains(UInt8(ascii: "%")) || QueryParameterName.containsWord("method", in: query) else { return found }
        for pair in query.split(whereSeparator: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: ";") }) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard QueryParameterName.read(QueryParameterName.decoded(parts[0])) == Self.methodOverrideName else { continue }
            // Appended in place: a copy per pair would cost the square of their number.
            if found == nil { found = [] }
            found?.append(parts.count > 1 ? String(decoding: QueryParameterName.decoded(parts[1]), as: UTF8.self) : "")
        }
        return found
    }

    /// Whether cutting a `strip_prefix` route's `prefix` off `path` leaves a first segment `.` or
    /// `..` (with or without `;` parameters): the router lets a format suffix on the prefix's last
    /// segment match (`/api.json`), so `/api..` would reach the upstream as `/..` — a dot segment
    /// the path policy refuses everywhere else.
    static func cutLeavesDotSegment(_ path: Substring, prefix: String) -> Bool {
        guard prefix != "/" else { return false }
        let rest = path.utf8.dropFirst(prefix.utf8.count)
        guard rest.first == UInt8(ascii: ".") else { return false }
        // `..;x` is a dot segment too where `;` parameters are kept (`path.semicolons: keep`).
        let segment = rest.prefix { $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: ";") }
        return segment.count == 1 || (segment.count == 2 && segment.last == UInt8(ascii: "."))
    }

    /// The method-override query parameter's name, as `QueryParameterName.read` gives it.
    private static let methodOverrideName = Array("_method".utf8)

    /// Frameworks that honour a method-override field (Rails, Laravel, Symfony, Express's
    /// method-override, Spring's filter) run the method it names — the field they read, first or
    /// last of several, or the first element of a list. So every element of every such field must
    /// be a method that routes where the request's own method did; otherwise the refusal: 405 with
    /// the route's methods when it lists them, else 400. Otherwise a POST to a public route could
    /// run a DELETE only an authenticated route accepts.
    static func refuseOverride(_ values: [String], head: HTTPRequestHead, host: String?, path: Substring, route: CompiledRoute,
                               router: Router) -> ErrorResponse? {
        // Each method is routed once, however often the request names it.
        var checked: Set<String> = []
        for value in values {
            for element in value.split(separator: ",", omittingEmptySubsequences: false) {
                let method = String(Substring(HeaderList.trimmed(element.utf8))).uppercased()
                if method == head.method.rawValue || !checked.insert(method).inserted { continue }
                if HeaderName.isValid(method), case .matched(let same) = router.match(host: HostHeader.name(host), path: path, method: method),
                   same.config.name == route.config.name { continue }
                let description = "the request's method override names \(method.isEmpty ? "nothing" : method), which does not go where \(head.method.rawValue) does; send that method itself"
                guard let methods = route.config.methods else {
                    return ErrorResponse(status: .badRequest, error: "invalid_request", description: description)
                }
                var response = ErrorResponse(status: .methodNotAllowed, error: "method_not_allowed", description: description)
                response.headers.add(name: "Allow", value: methods.sorted().joined(separator: ", "))
                return response
            }
        }
        return nil
    }

    /// The checks on a request head before routing: one `Host` (required, also from HTTP/1.0
    /// clients: the request goes on as HTTP/1.1, which must carry one, RFC 9112 §3.2) of
    /// valid syntax, agreeing with an absolute-form target's authority; a body that can be framed;
    /// header names under the underscore policy; the target under the path policy. Returns the
    /// target to route.
    static func checkHead(_ head: HTTPRequestHead, facts: RequestHeadFacts, policy: RequestPolicy) -> Result<RequestTarget, RequestTarget.Refusal> {
        if facts.hostCount > 1 { return .failure(.init(description: "the request has more than one Host header")) }
        if facts.hasTransferEncoding, !facts.transferEncodingEndsChunked {
            return .failure(.init(description: "the request's Transfer-Encoding does not end in chunked, so its body cannot be framed"))
        }
        if let host = facts.host {
            // An empty Host is allowed (RFC 9110 §7.2: a target without an authority).
            if !host.isEmpty, !HostHeader.isValid(host) { return .failure(.init(description: "the Host header is not a valid host[:port]")) }
        } else {
            return .failure(.init(description: "the request needs a Host header"))
        }
        if facts.hasAmbiguousNames, policy.headersWithUnderscores == .reject {
            return .failure(.init(description: "header names with underscores (or other characters than letters, digits and '-') are refused"))
        }
        let target: RequestTarget
        switch RequestTarget.parse(head.uri, policy: policy.path) {
        case .success(let parsed): target = parsed
        case .failure(let refusal): return .failure(refusal)
        }
        if let authority = target.authority, !HeaderNameSet.equalsIgnoringASCIICase((facts.host ?? "").utf8, authority.lowercased().utf8) {
            return .failure(.init(description: "the Host header disagrees with the request target's authority"))
        }
        return .success(target)
    }
}
