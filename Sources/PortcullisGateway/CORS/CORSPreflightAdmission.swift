import NIOHTTP1

extension Admission {
    /// The gateway's own answer to a CORS preflight, before authentication, client certificates
    /// and rate limits (a browser sends preflights without credentials): nil when `head` is not a
    /// preflight or the route it asks about has no `cors` block — it is then an ordinary
    /// `OPTIONS` request. The route is the one the actual request will match, found with the
    /// method the preflight asks for.
    ///
    /// Allowed: 204 with the `Access-Control-*` fields. Refused: 403 `cors_refused` without
    /// any, so the browser never sends the actual request.
    static func corsPreflight(_ head: HTTPRequestHead, target: RequestTarget, facts: RequestHeadFacts, table: RouteTable,
                              log: inout RequestLog) -> Decision? {
        guard head.method == .OPTIONS, let preflight = CORSPolicy.Preflight(head.headers) else { return nil }
        let host = HostHeader.name(facts.host)
        let route: CompiledRoute
        var methodAllowed = true
        switch table.router.match(host: host, path: target.path, method: preflight.method) {
        case .matched(let matched):
            route = matched
        case .methodNotAllowed(let allowed):
            // The route the path belongs to does not take that method: refused, by that route's
            // rules if it has a `cors` block (found through a method it does take).
            guard let other = allowed.first, case .matched(let matched) = table.router.match(host: host, path: target.path, method: other) else { return nil }
            route = matched
            methodAllowed = false
        case .notFound:
            return nil
        }
        guard let cors = route.cors else { return nil }
        log.route = route.config.name
        switch methodAllowed ? cors.answer(preflight) : .failure(.method) {
        case .success(let fields):
            var response = ErrorResponse(status: .noContent, error: "cors_preflight", description: "")
            response.headers = HTTPHeaders(fields.map { ($0.name, $0.value) })
            return .refused(response, metrics: route.metrics)
        case .failure(let refusal):
            log.reason = "cors_refused"
            return .refused(ErrorResponse(status: .forbidden, error: "cors_refused", description: refusal.description), metrics: route.metrics)
        }
    }
}
