import NIOHTTP1

extension HeaderRewriter {
    /// The request head for an HTTP/2 upstream: the HTTP/1.1 rewrite (`upstreamRequest`) as
    /// fields, plus `te: trailers` when the client sent it — gRPC requires it end to end, and it
    /// is the one `TE` value HTTP/2 allows. Body framing fields are left to swift-nio-http2's
    /// codec (DATA frames frame the body; a `Content-Length` is passed on and checked).
    static func http2UpstreamRequest(_ head: UpstreamRequestHead, clientHead: HTTPRequestHead) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        for (name, value) in head.fields where !HeaderNameSet.matches(name, "transfer-encoding") {
            headers.add(name: name, value: value)
        }
        if clientHead.headers[canonicalForm: "te"].contains(where: { $0.lowercased() == "trailers" }) {
            headers.add(name: "te", value: "trailers")
        }
        return HTTPRequestHead(version: .http2, method: head.method, uri: head.uri, headers: headers)
    }

    /// The fields of an HTTP/2 upstream's response head or trailers for the client: the ones
    /// the route lets through (hop-by-hop, those `Connection` names and the route's removals
    /// dropped), then — on a head only — `X-Request-Id`, the route's `set` fields and `extra`.
    static func http2ClientFields(_ upstream: HTTPHeaders, policy: Policy, requestID: String?, extra: HTTPHeaders?) -> HTTPHeaders {
        let listed = HeaderNameSet(upstream[canonicalForm: "connection"].map(String.init))
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(upstream.count + 4)
        for (name, value) in upstream where !policy.responseRemoved.contains(name) && !listed.contains(name) {
            fields.append((name, value))
        }
        if let requestID {
            if !policy.route.responseHeaders.setFields.contains(where: { HeaderNameSet.matches($0.name, "x-request-id") }) {
                fields.append(("x-request-id", requestID))
            }
            replaceOrAdd(policy.route.responseHeaders.setFields, in: &fields)
            if let extra { replaceOrAdd(extra.map { ($0.name, $0.value) }, in: &fields) }
        }
        return HTTPHeaders(fields)
    }
}
