import NIOHTTP1
import PortcullisJOSE

/// Builds the request the upstream sees and the response the client sees. Pure functions, so the
/// security-relevant parts (identity spoofing, hop-by-hop stripping) are unit-tested in isolation.
enum HeaderRewriter {
    /// RFC 9110 §7.6.1 connection-specific fields, plus `Expect` (the gateway answers
    /// `100-continue` itself) and the obsolete `Proxy-Connection`.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "expect",
    ]

    /// Facts about the client connection the forwarding headers need.
    struct ClientInfo {
        var address: String?
        var isTLS: Bool
    }

    /// The head forwarded upstream. `identity` is nil on unauthenticated routes; identity headers
    /// supplied by the client are removed either way, so they can only come from a verified token.
    static func upstreamRequest(
        _ head: HTTPRequestHead,
        route: RouteConfig,
        identity: VerifiedToken?,
        identityHeaders: [IdentityHeader],
        requestID: String,
        client: ClientInfo
    ) -> HTTPRequestHead {
        var removed = hopByHop
        for value in head.headers["connection"] {
            for token in value.split(separator: ",") {
                removed.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        for header in identityHeaders { removed.insert(header.header.lowercased()) }
        for header in IdentityHeader.defaults { removed.insert(header.header.lowercased()) }
        removed.insert("x-request-id")
        removed.insert("x-forwarded-proto")
        removed.insert("x-forwarded-host")
        if route.stripAuthorization { removed.insert("authorization") }
        for name in route.requestHeaders.remove { removed.insert(name.lowercased()) }

        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count + 8)
        var priorForwardedFor: String?
        var priorForwarded: String?
        var originalHost: String?
        var hasContentLength = false
        for (name, value) in head.headers {
            let lower = name.lowercased()
            switch lower {
            case "x-forwarded-for":
                priorForwardedFor = priorForwardedFor.map { "\($0), \(value)" } ?? value
                continue
            case "forwarded":
                priorForwarded = priorForwarded.map { "\($0), \(value)" } ?? value
                continue
            case "host":
                originalHost = value
            case "content-length":
                hasContentLength = true
            default:
                break
            }
            if removed.contains(lower) { continue }
            headers.add(name: name, value: value)
        }

        // Body framing: the client's chunked encoding is hop-by-hop and stripped above; re-declare it.
        let chunked = head.headers["transfer-encoding"].contains { $0.lowercased().contains("chunked") }
        if chunked {
            headers.add(name: "transfer-encoding", value: "chunked")
        } else if !hasContentLength, methodMayHaveBody(head.method) {
            headers.add(name: "content-length", value: "0")
        }

        let proto = client.isTLS ? "https" : "http"
        if let address = client.address {
            headers.add(name: "X-Forwarded-For", value: priorForwardedFor.map { "\($0), \(address)" } ?? address)
        } else if let priorForwardedFor {
            headers.add(name: "X-Forwarded-For", value: priorForwardedFor)
        }
        headers.add(name: "X-Forwarded-Proto", value: proto)
        if let originalHost { headers.add(name: "X-Forwarded-Host", value: originalHost) }
        var element = "proto=\(proto)"
        if let address = client.address {
            element = (address.contains(":") ? "for=\"[\(address)]\"" : "for=\(address)") + ";" + element
        }
        if let originalHost, isForwardedToken(originalHost) { element += ";host=\(originalHost)" }
        headers.add(name: "Forwarded", value: priorForwarded.map { "\($0), \(element)" } ?? element)
        headers.add(name: "X-Request-Id", value: requestID)

        if let identity {
            for mapping in identityHeaders {
                if let value = claimValue(mapping.claim, of: identity) {
                    headers.add(name: mapping.header, value: value)
                }
            }
        }
        for (name, value) in route.requestHeaders.setFields {
            headers.replaceOrAdd(name: name, value: value)
        }

        var uri = head.uri
        if route.stripPrefix, route.pathPrefix != "/" {
            let rest = uri.dropFirst(route.pathPrefix.utf8.count)
            uri = rest.hasPrefix("/") ? String(rest) : "/" + rest
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: headers)
    }

    /// The head returned to the client.
    static func clientResponse(_ head: HTTPResponseHead, route: RouteConfig, requestID: String) -> HTTPResponseHead {
        var removed = hopByHop
        for value in head.headers["connection"] {
            for token in value.split(separator: ",") {
                removed.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        for name in route.responseHeaders.remove { removed.insert(name.lowercased()) }
        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count + 2)
        for (name, value) in head.headers where !removed.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        headers.replaceOrAdd(name: "X-Request-Id", value: requestID)
        for (name, value) in route.responseHeaders.setFields {
            headers.replaceOrAdd(name: name, value: value)
        }
        return HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)
    }

    /// A claim as a header value: strings as-is, arrays space-joined, numbers and booleans as
    /// JSON; control characters become spaces so a claim can never split a header.
    static func claimValue(_ claim: String, of token: VerifiedToken) -> String? {
        let raw: String?
        switch claim {
        case "sub": raw = token.subject
        case "iss": raw = token.issuer
        case "client_id": raw = token.clientID
        case "scope", "scp": raw = token.scopes.isEmpty ? nil : token.scopes.joined(separator: " ")
        default:
            switch token.claims.value(atPath: claim) {
            case .none, .some(.null): raw = nil
            case .some(.string(let text)): raw = text
            case .some(.array(let items)): raw = items.map { $0.stringValue ?? JSONWriter.serialize($0) }.joined(separator: " ")
            case .some(let other): raw = JSONWriter.serialize(other)
            }
        }
        guard let raw else { return nil }
        return String(String.UnicodeScalarView(raw.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    static func methodMayHaveBody(_ method: HTTPMethod) -> Bool {
        switch method {
        case .POST, .PUT, .PATCH: true
        default: false
        }
    }

    /// RFC 7239 lets `host=` be a bare token only if it has no characters needing quotes.
    private static func isForwardedToken(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        }
    }
}
