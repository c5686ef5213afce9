import NIOCore
import NIOHTTP1
import PortcullisJOSE

/// Builds the request the upstream sees and the response the client sees. Pure functions over a
/// per-route `Policy` computed once, so the security-relevant parts (identity spoofing, hop-by-hop
/// stripping) are unit-tested in isolation and the request path does no set building.
///
/// Every header the gateway writes is valid by construction, which is why `HTTP1Writer` copies
/// fields out without validating them again: an HTTP/1.1 client's fields were validated by NIO's
/// llhttp decoder, an HTTP/2 client's by swift-nio-http2 and `HTTP2HeaderBlocks`, and an
/// upstream's by `UpstreamResponseParser` (token names, no control characters in values);
/// configured `set` fields are checked when the config loads; claim values have control
/// characters replaced (`claimValue`); error descriptions in challenges are reduced to printable
/// ASCII (`ErrorResponse.quoted`); everything else is generated (ids, numbers, addresses).
enum HeaderRewriter {
    /// RFC 9110 §7.6.1 connection-specific fields, plus `Expect` (the gateway answers
    /// `100-continue` itself) and the obsolete `Proxy-Connection`.
    static let hopByHop = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "expect",
    ]

    /// Fields that state where a request came from, or what it first asked for, that the gateway
    /// does not state itself (it states `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded`): a
    /// client's own would reach upstreams that trust them — for the client's address (go-chi's
    /// RealIP reads `True-Client-IP` first), the scheme, port or path prefix (Spring's
    /// ForwardedHeaderFilter, Werkzeug's ProxyFix, Rack), or the path itself (IIS and Symfony
    /// route by `X-Original-URL` and `X-Rewrite-URL`, past the route the gateway matched). With them
    /// the client certificate a proxy in front states (RFC 9440's `Client-Cert`, Envoy's
    /// `X-Forwarded-Client-Cert`, nginx-style `X-SSL-Client-*`: an upstream reading them would take
    /// the client's own claim of a verified certificate), and `Proxy` (httpoxy: CGI-style upstreams
    /// read it as `HTTP_PROXY`, the outbound proxy of many HTTP libraries). Removed from every
    /// request, a trusted proxy's too: proxies and CDNs pass on most of these as the client sent
    /// them, and the gateway states the client it resolved in `X-Forwarded-For`. A list, not a
    /// rule: names not on it pass.
    static let clientStatedForwarding = [
        "x-real-ip", "true-client-ip", "x-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip",
        "client-ip", "x-forwarded", "forwarded-for", "x-original-forwarded-for", "x-real-forwarded-for",
        "proxy-client-ip", "wl-proxy-client-ip", "x-proxyuser-ip", "fly-client-ip", "x-azure-clientip", "x-azure-socketip",
        "x-appengine-user-ip", "cf-connecting-ipv6", "x-vercel-forwarded-for", "remote-addr", "x-envoy-internal",
        "x-http-host-override", "x-forwarded-host-override",
        "client-cert", "client-cert-chain", "x-forwarded-client-cert", "x-client-cert", "ssl-client-cert", "x-ssl-client-cert",
        "x-ssl-client-verify", "x-client-verify", "x-ssl-client-dn", "x-ssl-client-s-dn", "x-ssl-client-i-dn", "proxy",
        "x-scheme", "x-forwarded-protocol", "x-arr-ssl", "cloudfront-forwarded-proto", "fastly-ssl", "x-arr-clientcert",
        "x-ssl-cert", "x-client-dn", "x-middleware-subrequest",
        "remote-user", "x-remote-user", "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups",
        "x-forwarded-preferred-username", "x-webauth-user", "x-goog-authenticated-user-email", "x-goog-authenticated-user-id",
        "x-endpoint-api-userinfo", "x-apigateway-api-userinfo", "x-consumer-username", "x-consumer-id", "x-consumer-custom-id",
        "x-authenticated-userid",
        "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-forwarded-ssl", "x-forwarded-scheme",
        "x-forwarded-uri", "x-forwarded-path", "x-forwarded-method", "front-end-https", "x-url-scheme",
        "x-original-url", "x-rewrite-url", "x-original-uri", "x-original-method", "x-original-host", "x-host",
        "x-originating-ip", "x-remote-ip", "x-remote-addr", "x-envoy-external-address", "x-envoy-original-path",
    ]

    /// Name prefixes of families of such fields too large to list: Envoy's `x-envoy-*` (which
    /// Envoy trusts from internal callers), AWS load balancers' `x-amzn-mtls-*` and
    /// `x-amzn-oidc-*`, Google's `x-client-cert-*`, Traefik's `x-forwarded-tls-*`, oauth2-proxy's
    /// `x-auth-request-*`, Azure App Service's `x-ms-client-principal*`, nginx-style
    /// `x-ssl-client-*` (each would otherwise be passed on).
    static let clientStatedPrefixes = ["x-envoy-", "x-amzn-mtls-", "x-amzn-oidc-", "x-client-cert-", "x-forwarded-tls-",
                                       "x-auth-request-", "x-ms-client-principal", "x-ssl-client-"]

    /// Whether `name` begins with one of `clientStatedPrefixes` (in any case). One byte read for
    /// names not starting with `x`.
    static func hasClientStatedPrefix(_ name: String) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, first | 0x20 == UInt8(ascii: "x"), bytes.count > 8 else { return false }
        return clientStatedPrefixes.contains { prefix in
            bytes.count >= prefix.utf8.count && HeaderNameSet.equalsIgnoringASCIICase(bytes.prefix(prefix.utf8.count), prefix.utf8)
        }
    }

    /// What one route removes and adds, resolved once per route table. A class: the request path
    /// takes it from its route twice per request, and a struct this size costs a retain per member.
    final class Policy: Sendable {
        let route: RouteConfig
        let identityHeaders: [IdentityHeader]
        /// Removed from requests: hop-by-hop, every identity header (configured and default),
        /// headers the gateway sets itself, `clientStatedForwarding`, `Authorization` when stripped, the route's removals.
        let requestRemoved: HeaderNameSet
        /// Removed from upstream responses: hop-by-hop, the route's removals, and the fields the
        /// route or the gateway set.
        private let responseRemoved: HeaderNameSet
        /// On a CORS route, every `Access-Control-*` field of an upstream's response is removed
        /// too, whatever its name: the route's rules are the only ones a browser reads.
        let removesAccessControl: Bool
        /// What happens to request header names with `_`.
        let underscores: RequestPolicy.UnderscoreHeaders
        /// The names the route's `request_headers.set` writes.
        let routeSet: HeaderNameSet

        init(route: RouteConfig, identityHeaders: [IdentityHeader], underscores: RequestPolicy.UnderscoreHeaders = .drop) {
            self.route = route
            self.identityHeaders = identityHeaders
            self.underscores = underscores
            routeSet = HeaderNameSet(route.requestHeaders.setFields.map(\.name))
            var request = HeaderNameSet(HeaderRewriter.hopByHop)
            for header in identityHeaders + IdentityHeader.defaults { request.insert(header.header) }
            for name in ["x-request-id", "x-forwarded-proto", "x-forwarded-host"] { request.insert(name) }
            for name in HeaderRewriter.clientStatedForwarding { request.insert(name) }
            if route.stripAuthorization { request.insert("authorization") }
            for name in route.requestHeaders.remove { request.insert(name) }
            requestRemoved = request
            var response = HeaderNameSet(HeaderRewriter.hopByHop)
            response.insert("x-request-id")
            for name in route.responseHeaders.remove { response.insert(name) }
            for (name, _) in route.responseHeaders.setFields { response.insert(name) }
            // The gateway states the rate-limit state itself (`RateLimit-*` on every answer).
            if route.rateLimit != nil {
                for name in RateLimitFields.names { response.insert(name) }
            }
            responseRemoved = response
            removesAccessControl = route.cors != nil
        }

        /// Whether an upstream response field named `name` is left out (every path that relays an
        /// upstream's head asks this, never `responseRemoved` alone).
        func removesFromResponse(_ name: some Collection<UInt8>) -> Bool {
            responseRemoved.contains(name) || (removesAccessControl && HeaderRewriter.isAccessControl(name))
        }

        /// Fields the gateway states itself, whatever the route removes.
        private static let gatewayStated = HeaderNameSet(["host", "content-length", "transfer-encoding", "forwarded", "x-forwarded-for"])

        /// Whether a request field whose name has a character other than a letter, a digit or `-`
        /// (`AmbiguousFieldName`) is forwarded: only under `allow`, and then not when, read with
        /// `-` for each such character (as CGI-style upstreams may read it), it names a field the
        /// gateway removes or states itself, or one with a prefix of the fields other proxies state
        /// (`X-Auth-Request-*`, `X-Amzn-Oidc-*`, …), which the gateway removes.
        func forwardsUnderscored(_ name: String) -> Bool {
            guard underscores == .allow else { return false }
            let dashed = AmbiguousFieldName.dashed(name)
            let forwarding = Array("x-forwarded-".utf8)
            return !requestRemoved.contains(dashed) && !Self.gatewayStated.contains(dashed) && !routeSet.contains(dashed)
                && !(dashed.count > forwarding.count && HeaderNameSet.equalsIgnoringASCIICase(dashed.prefix(forwarding.count), forwarding))
                && !HeaderRewriter.hasClientStatedPrefix(String(decoding: dashed, as: UTF8.self))
        }
    }

    /// Whether a field name starts `Access-Control-` (CORS, in any letter case).
    static func isAccessControl(_ name: some Collection<UInt8>) -> Bool {
        let prefix = "access-control-".utf8
        return name.count > prefix.count && HeaderNameSet.equalsIgnoringASCIICase(name.prefix(prefix.count), prefix)
    }

    /// Headers named in `Connection` (they are hop-by-hop too), when there are any.
    static func connectionListed(_ headers: HTTPHeaders) -> HeaderNameSet? {
        var listed: HeaderNameSet?
        for (name, value) in headers where name.utf8.count == 10 && HeaderNameSet.matches(name, "connection") {
            addConnectionListed(value.utf8, to: &listed)
        }
        return listed
    }

    /// Adds the names a `Connection` value lists, other than `close` and `keep-alive`.
    static func addConnectionListed(_ value: some BidirectionalCollection<UInt8>, to listed: inout HeaderNameSet?) {
        HeaderList.forEachElement(value) { option in
            if HeaderNameSet.equalsIgnoringASCIICase(option, "close".utf8) || HeaderNameSet.equalsIgnoringASCIICase(option, "keep-alive".utf8) { return }
            if listed == nil { listed = HeaderNameSet([]) }
            listed?.insert(String(decoding: option, as: UTF8.self))
        }
    }

    /// The head forwarded upstream, for the normalised target `uri` (`RequestTarget.uri`).
    /// `identity` is nil on unauthenticated routes; identity headers supplied by the client are
    /// removed either way, so they can only come from a verified token. `hasAmbiguousNames`
    /// (from `RequestHeadFacts`) says whether any name needs the underscore policy applied.
    static func upstreamRequest(_ head: HTTPRequestHead, uri: String, policy: Policy, identity: VerifiedToken?, requestID: String,
                                client: ClientInfo, hasAmbiguousNames: Bool = false,
                                reusing storage: consuming [(name: String, value: String)] = []) -> UpstreamRequestHead {
        let listed = connectionListed(head.headers)
        // The caller may hand in the previous request's field list: once that request is done it
        // is the only reference, and its storage serves again instead of a new allocation.
        var headers = consume storage
        headers.removeAll(keepingCapacity: true)
        // Room for every field appended below, so the array is allocated once.
        headers.reserveCapacity(head.headers.count + 8 + policy.identityHeaders.count + policy.route.requestHeaders.setFields.count)
        var priorForwarded: String?
        var originalHost: String?
        var contentLength: String?
        var chunked = false
        for (name, value) in head.headers {
            // By length first: most names match none of these, and then only one length compare runs.
            switch name.utf8.count {
            case 15 where HeaderNameSet.matches(name, "x-forwarded-for"):
                // Stated by the gateway (`forwardingChain`).
                continue
            case 9 where HeaderNameSet.matches(name, "forwarded"):
                priorForwarded = priorForwarded.map { "\($0), \(value)" } ?? value
                continue
            case 14 where HeaderNameSet.matches(name, "content-length"):
                // Body framing is the gateway's to state, from what NIO's decoder accepted: a client
                // naming Content-Length in `Connection` must not make the upstream see a request
                // without a length (its body would then be read as a second, unchecked request).
                // The number as the gateway read it: llhttp leaves trailing whitespace in the value
                // (`Content-Length:3 `), which a stricter upstream might refuse, and keeps leading
                // zeros (`05`), which an upstream need not read as 5.
                if contentLength == nil {
                    let trimmed = trimmedWhitespace(value)
                    contentLength = trimmed.utf8.first == UInt8(ascii: "0") && trimmed.utf8.count > 1 ? UInt64(trimmed).map(String.init) ?? trimmed : trimmed
                }
                continue
            case 17 where HeaderNameSet.matches(name, "transfer-encoding"):
                HeaderList.forEachElement(value.utf8) { coding in
                    if HeaderNameSet.equalsIgnoringASCIICase(coding, "chunked".utf8) { chunked = true }
                }
                continue
            default:
                break
            }
            let isHost = name.utf8.count == 4 && HeaderNameSet.matches(name, "host")
            if isHost { originalHost = value }
            if policy.requestRemoved.contains(name) || (!isHost && listed?.contains(name) == true) { continue }
            if Self.hasClientStatedPrefix(name) { continue }
            if hasAmbiguousNames, AmbiguousFieldName.isAmbiguous(name), !policy.forwardsUnderscored(name) { continue }
            headers.append((name, value))
        }

        // The client's chunked coding is hop-by-hop (not forwarded as is); re-declare it.
        if chunked {
            headers.append(("transfer-encoding", "chunked"))
        } else if let contentLength {
            headers.append(("content-length", contentLength))
        } else if methodMayHaveBody(head.method) {
            headers.append(("content-length", "0"))
        }

        // Only the part of the chain the gateway believes goes on (`forwardingChain`).
        let (forwardedFor, forwarded) = forwardingChain(client: client, headers: head.headers, priorForwarded: priorForwarded)
        if let forwardedFor { headers.append(("X-Forwarded-For", forwardedFor)) }
        headers.append(("X-Forwarded-Proto", client.proto))
        if let originalHost { headers.append(("X-Forwarded-Host", originalHost)) }
        let element = client.forwardedElement(host: originalHost)
        headers.append(("Forwarded", forwarded.map { "\($0), \(element)" } ?? element))
        headers.append(("X-Request-Id", requestID))

        if let identity {
            for mapping in policy.identityHeaders {
                if let value = claimValue(mapping.claim, of: identity) {
                    headers.append((mapping.header, value))
                }
            }
        }
        replaceOrAdd(policy.route.requestHeaders.setFields, in: &headers)

        var uri = uri
        let route = policy.route
        if route.stripPrefix, route.pathPrefix != "/" {
            // The router matched the prefix in these bytes (or ignoring ASCII case, which keeps
            // the length), so it is cut by bytes too.
            let rest = Substring(uri.utf8.dropFirst(route.pathPrefix.utf8.count))
            uri = rest.utf8.first == UInt8(ascii: "/") ? String(rest) : "/" + rest
        }
        let hasBody = chunked || (contentLength.map { $0 != "0" } ?? false)
        return UpstreamRequestHead(method: head.method, uri: uri, fields: headers, isChunked: chunked,
                                   closesConnection: closesUpstreamConnection(head.method, hasBody: hasBody))
    }

    /// Whether an HTTP/1.1 upstream connection carries no request after this one. A HEAD's
    /// answer frames a body that does not follow, so its connection is never pooled again (should
    /// the body come anyway, the next request — another client's — would take it for its
    /// response). A body on any method but POST, PUT and PATCH — GET, DELETE, OPTIONS, TRACE,
    /// which RFC 9110 gives a body no meaning, and every other method, WebDAV's and unknown
    /// ones, in any spelling an HTTP/2 client sends — is one a server may answer without reading
    /// (Python's http.server, static-file handlers): what it leaves unread would be read as the
    /// start of the next request on the connection — another client's request, token and all,
    /// would become that body's continuation (a "CL.0" desync; a list of the four methods alone
    /// would let `PURGE`, `PROPFIND` and HTTP/2's `get` through).
    /// Such a connection is told `Connection: close`, so the upstream closes it, and the gateway
    /// never pools it (closing it with a reset at the response's end: no TIME_WAIT at the gateway).
    static func closesUpstreamConnection(_ method: HTTPMethod, hasBody: Bool) -> Bool {
        switch method {
        case .HEAD: true
        case .POST, .PUT, .PATCH: false
        default: hasBody
        }
    }

    /// The `X-Forwarded-For` value and the prior `Forwarded` elements sent upstream. The client's
    /// own forwarding headers are never passed on as they came: from a peer that is not a trusted
    /// proxy, `X-Forwarded-For` is the peer alone and its `Forwarded` is dropped; behind a trusted
    /// proxy, `X-Forwarded-For` is the chain from the client the walk found to the peer, and
    /// `Forwarded` (when it is the header the proxies write) keeps the same trailing elements.
    /// So an upstream reading the leftmost entry reads the client the gateway rate-limits by.
    static func forwardingChain(client: ClientInfo, headers: HTTPHeaders, priorForwarded: String?) -> (forwardedFor: String?, forwarded: String?) {
        guard let address = client.address else { return (nil, nil) }
        guard let trusted = client.trustedProxies else { return (address, nil) }
        let resolution = trusted.resolve(peer: address, headers: headers)
        guard resolution.peerTrusted else { return (address, nil) }
        let forwardedFor = (resolution.chain + [address]).joined(separator: ", ")
        guard trusted.header == .forwarded, let priorForwarded, !resolution.chain.isEmpty else { return (forwardedFor, nil) }
        let elements = priorForwarded.split(separator: ",", omittingEmptySubsequences: false)
        return (forwardedFor, elements.suffix(resolution.chain.count).map { String($0).trimmingASCIISpaces() }.joined(separator: ", "))
    }

    /// `value` without leading and trailing spaces and tabs (the same string when it has none).
    static func trimmedWhitespace(_ value: String) -> String {
        let trimmed = HeaderList.trimmed(value.utf8)
        return trimmed.count == value.utf8.count ? value : String(Substring(trimmed))
    }

    /// A route's `set` fields replace any field of the same name.
    static func replaceOrAdd(_ fields: [(String, String)], in headers: inout [(name: String, value: String)]) {
        for (name, value) in fields {
            let lower = Array(name.lowercased().utf8)
            headers.removeAll { HeaderNameSet.equalsIgnoringASCIICase($0.0.utf8, lower) }
            headers.append((name, value))
        }
    }

    /// The head returned to the client, in the client's `version`: the upstream's fields minus
    /// hop-by-hop ones, those its `Connection` names, the route's removals and any the gateway
    /// sets itself; then `X-Request-Id`, the route's `set` fields and `extra` (rate-limit state).
    /// The upstream's fields are referenced, not copied.
    static func clientResponse(_ head: UpstreamResponseHead, policy: Policy, requestID: String,
                               extra: HTTPHeaders?, version: HTTPVersion) -> ClientResponseHead {
        var response = ClientResponseHead(version: version, status: head.status, contentLength: head.contentLength)
        head.withBytes { bytes in
            var listed: HeaderNameSet?
            for field in head.fields where field.name.count == 10 && HeaderNameSet.equalsIgnoringASCIICase(bytes[field.name], "connection".utf8) {
                addConnectionListed(bytes[field.value], to: &listed)
            }
            for (index, field) in head.fields.enumerated() {
                let name = bytes[field.name]
                if policy.removesFromResponse(name) || listed?.contains(name) == true { continue }
                response.forwardedFields.insert(index)
            }
        }
        response.forwarded = head
        let setFields = policy.route.responseHeaders.setFields
        // A route's `set` fields replace any field of the same name, X-Request-Id included.
        let routeSetsRequestID = setFields.contains { HeaderNameSet.matches($0.name, "x-request-id") }
        response.requestID = routeSetsRequestID ? nil : requestID
        replaceOrAdd(setFields, in: &response.fields)
        if let extra { replaceOrAdd(extra.map { ($0.name, $0.value) }, in: &response.fields) }
        return response
    }

    /// A claim as a header value: strings as-is, arrays as a `SpaceSeparatedList` (an element
    /// holding a space is quoted, so it cannot read as two), numbers and booleans as JSON; control
    /// characters become spaces so a claim can never split a header.
    static func claimValue(_ claim: String, of token: VerifiedToken) -> String? {
        let raw: String?
        switch claim {
        case "sub": raw = token.subject
        case "iss": raw = token.issuer
        case "client_id": raw = token.clientID
        case "scope", "scp": raw = token.scopes.isEmpty ? nil : token.scopeList
        default:
            switch token.claims.value(atPath: claim) {
            case .none, .some(.null): raw = nil
            case .some(.string(let text)): raw = text
            case .some(.array(let items)): raw = SpaceSeparatedList.encode(items.map { $0.stringValue ?? JSONWriter.serialize($0) })
            case .some(let other): raw = JSONWriter.serialize(other)
            }
        }
        guard let raw else { return nil }
        let hasControl = raw.utf8.withContiguousStorageIfAvailable { $0.contains { $0 < 0x20 || $0 == 0x7F } }
            ?? raw.utf8.contains { $0 < 0x20 || $0 == 0x7F }
        guard hasControl else { return raw }
        return String(String.UnicodeScalarView(raw.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    static func methodMayHaveBody(_ method: HTTPMethod) -> Bool {
        switch method {
        case .POST, .PUT, .PATCH: true
        default: false
        }
    }

    /// RFC 7239 lets `host=` be a bare token only if it has no characters needing quotes.
    static func isForwardedToken(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        }
    }
}
