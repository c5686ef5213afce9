import NIOHPACK
import NIOHTTP1

extension HeaderRewriter {
    /// The header block of the request to an HTTP/2 upstream: the pseudo-fields (`:authority`
    /// from the rewrite's `Host`), then the HTTP/1.1 rewrite's fields (`upstreamRequest`) with
    /// lower-case names and without the connection-specific ones HTTP/2 forbids, plus
    /// `te: trailers` when the client sent it — gRPC requires it end to end, and it is the one
    /// `TE` value HTTP/2 allows. DATA frames frame the body; a `Content-Length` is passed on and
    /// checked by swift-nio-http2.
    ///
    /// Built here rather than by NIO's HTTP/2-to-HTTP/1 codec, which marks every field indexable:
    /// the request id and `traceparent`, new in every request, are sent as literals without
    /// indexing (RFC 7541 §6.2.2), so that they do not push the fields that repeat (the identity,
    /// the token) out of the connection's HPACK table, as `HTTP2HeaderBlocks` does for responses
    /// to clients.
    static func http2UpstreamRequest(_ head: UpstreamRequestHead, clientHead: HTTPRequestHead, scheme: String) -> HPACKHeaders {
        var block = HPACKHeaders()
        block.reserveCapacity(head.fields.count + 5)
        block.add(name: ":method", value: head.method.rawValue)
        block.add(name: ":scheme", value: scheme)
        if let host = head.fields.first(where: { HeaderNameSet.matches($0.name, "host") }) {
            block.add(name: ":authority", value: host.value)
        }
        block.add(name: ":path", value: head.uri)
        for (name, value) in head.fields where !http2Forbidden.contains(name) {
            let lowered = lowercasedFieldName(name)
            block.add(name: lowered, value: value, indexing: notIndexed.contains(lowered) ? .nonIndexable : .indexable)
        }
        if clientHead.headers[canonicalForm: "te"].contains(where: { $0.lowercased() == "trailers" }) {
            block.add(name: "te", value: "trailers")
        }
        return block
    }

    /// Fields an HTTP/2 request does not carry: connection-specific ones (RFC 9113 §8.2.2), `Host`
    /// (sent as `:authority`) and `TE`, added back above only as `trailers`.
    private static let http2Forbidden = HeaderNameSet(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                                                       "host", "te"])

    /// Fields whose value is new in every request: indexing them would only fill the table.
    private static let notIndexed = HeaderNameSet(["x-request-id", "traceparent"])

    /// `name` in lower case (HTTP/2 field names are), without a copy when it already is.
    private static func lowercasedFieldName(_ name: String) -> String {
        name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? name.lowercased() : name
    }

    /// The fields of an HTTP/2 upstream's response head or trailers for the client: the ones
    /// the route lets through (pseudo-fields, hop-by-hop, those `Connection` names and the route's
    /// removals dropped), then — on a head only — `X-Request-Id`, the route's `set` fields and
    /// `extra`. `dropping` names more fields to leave out.
    static func http2ClientFields(_ upstream: HPACKHeaders, policy: Policy, requestID: String?, extra: HTTPHeaders?,
                                  dropping: HeaderNameSet? = nil) -> HTTPHeaders {
        // swift-nio-http2 refuses a response with `Connection`; checked anyway, at no cost without one.
        var listed: HeaderNameSet?
        for value in upstream["connection"] { addConnectionListed(value.utf8, to: &listed) }
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(upstream.count + 4)
        for (name, value, _) in upstream
        where !name.hasPrefix(":") && !policy.removesFromResponse(name.utf8) && !(listed?.contains(name) ?? false)
            && !(dropping?.contains(name) ?? false) {
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
