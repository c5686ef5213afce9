#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import NIOHTTP1
import PortcullisGateway
import PortcullisJOSE

/// What one fuzz input is run through on the request side: the bytes a client sends, decoded by
/// NIO's llhttp `HTTPRequestDecoder` configured as the gateway configures it, then for every
/// request head the gateway's target check, router and header rewrite (`RequestHeadPath`), and
/// the upstream head as written. Properties, for every request that is forwarded:
/// - the upstream head has no NUL, no control byte and no CR or LF outside a CRLF line end, and
///   NIO's decoder parses head plus framed body back to the same method, target, fields and body;
/// - the route is the one the table's rules choose (an independent reading of host, longest
///   prefix on a segment boundary, methods), and the forwarded path is the path the router
///   matched (less the prefix when the route strips it);
/// - the path, with percent-encoded unreserved bytes decoded and dot segments removed (RFC 3986
///   §6.2.2), still lies under the matched prefix: no dot segment escapes a route; and the
///   forwarded path holds no dot segment, in any spelling, a stripped prefix's suffix included;
/// - identity headers are never the client's: without a token there are none, with one each
///   appears once, with the token's value (control characters replaced);
/// - framing: the upstream head states the body with exactly one of `Transfer-Encoding: chunked`
///   and `Content-Length`, equal to what the client sent, or no length for a GET without a body;
///   `Connection: close` follows the fields exactly for a HEAD and for a body on a method other
///   than POST, PUT and PATCH (an upstream may leave such a body unread: the connection is not
///   to carry another client's request).
///
/// `PORTCULLIS_FUZZ_PATH_POLICY=strict` adds what issue 16's path policy is to guarantee and today's
/// code does not (so it fails now, by design): a target with a malformed percent escape is refused
/// or routed on exactly the path forwarded; no fragment is forwarded; the normalised path
/// (unreserved bytes decoded, `;params` stripped from dot segments, `//` merged) selects the same
/// route as the raw one; and no client field maps to an identity header when `_` is read as `-`.
enum RequestHeadHarness {
    struct Route {
        let name: String
        let host: String?
        let prefix: String
        let methods: [String]?
        let strip: Bool
    }

    static let routes: [Route] = [
        Route(name: "root", host: nil, prefix: "/", methods: ["GET", "HEAD"], strip: false),
        Route(name: "api", host: nil, prefix: "/api", methods: nil, strip: true),
        Route(name: "api-v2", host: nil, prefix: "/api/v2", methods: nil, strip: false),
        Route(name: "admin", host: nil, prefix: "/admin", methods: ["GET", "POST"], strip: false),
        Route(name: "public", host: nil, prefix: "/public", methods: nil, strip: false),
        Route(name: "internal", host: "internal.test", prefix: "/", methods: nil, strip: false),
        Route(name: "internal-ops", host: "internal.test", prefix: "/ops", methods: ["DELETE"], strip: true),
    ]

    static let path: RequestHeadPath = {
        var yaml = "listen: 127.0.0.1:1\nroutes:\n"
        for route in routes {
            yaml += "  - name: \(route.name)\n    path_prefix: \(route.prefix)\n    strip_prefix: \(route.strip)\n"
            yaml += "    upstream: {targets: [127.0.0.1:1]}\n"
            if let host = route.host { yaml += "    host: \(host)\n" }
            if let methods = route.methods { yaml += "    methods: [\(methods.joined(separator: ", "))]\n" }
        }
        do {
            return try RequestHeadPath(configYAML: yaml)
        } catch {
            fatalError("fuzz routes: \(error)")
        }
    }()

    static let strict = getenv("PORTCULLIS_FUZZ_PATH_POLICY").map { String(cString: $0) } == "strict"

    /// A token whose claims carry control characters, which must never split a header.
    static let token = VerifiedToken(issuerName: "main", issuer: "https://issuer.test", subject: "alice\r\nX-Auth-Subject: admin",
                                     jwtID: "j", clientID: "cli\u{0}", audiences: ["a"], scopes: ["read", "write"],
                                     expiresAt: 0, notBefore: nil, issuedAt: nil, keyID: "k", algorithm: .ES256, claims: ["tenant": "acme"])

    static func run(_ input: [UInt8]) {
        // The last byte, when odd, forwards the requests with a token (half the inputs).
        let identity = (input.last ?? 0) & 1 == 1 ? token : nil
        for request in decode(input, limits: gatewayLimits) {
            check(request, identity: identity)
        }
    }

    struct Request {
        var head: HTTPRequestHead
        var body: [UInt8] = []
        var complete = false
    }

    /// The limits `GatewayServer` gives the decoder (with the default `max_header_bytes`).
    static let gatewayLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = 32 * 1024
        limits.maxHeaderFieldSize = 32 * 1024
        limits.maxHeaderFieldCount = 256
        return limits
    }()

    /// The requests NIO's decoder reads from `bytes`, up to its first error.
    static func decode(_ bytes: [UInt8], limits: NIOHTTPDecoderLimitConfiguration = .init()) -> [Request] {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(
                leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: limits)))
        } catch {
            fatalError("decoder: \(error)")
        }
        // An error ends the connection; the requests decoded before it were already passed on.
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
        var requests: [Request] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): requests.append(Request(head: head))
            case .body(let body): requests[requests.count - 1].body += Array(buffer: body)
            case .end: requests[requests.count - 1].complete = true
            }
        }
        return requests
    }

    static func check(_ request: Request, identity: VerifiedToken?) {
        let head = request.head
        let outcome = path.forward(head, identity: identity, clientAddress: "192.0.2.7", requestID: "fuzz-1")
        let expected = expectedRoute(head, path: path.routedPath(head) ?? pathOf(head.uri).0)
        guard case .forwarded(let forwarded) = outcome else {
            if case .refused(let status) = outcome, status != 400, expected.name != nil || expected.status != status {
                fatalError("the router answered \(status), the table's rules say \(expected) for \(head.method) \(head.uri)")
            }
            return
        }
        guard forwarded.routeName == expected.name else {
            fatalError("routed to \(forwarded.routeName), the table's rules say \(expected) for \(head.uri)")
        }

        // The head as bytes: line ends only as CRLF, no NUL, no control byte but HTAB.
        let bytes = forwarded.headBytes
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case 0x0D: guard index + 1 < bytes.count, bytes[index + 1] == 0x0A else { fatalError("bare CR in the upstream head") }
            case 0x0A: guard index > 0, bytes[index - 1] == 0x0D else { fatalError("bare LF in the upstream head") }
            case 0x09: break
            case 0..<0x20, 0x7F: fatalError("control byte \(byte) in the upstream head")
            default: break
            }
        }

        // Target: what the router matched, less a stripped prefix.
        let (forwardedPath, fragment) = pathOf(forwarded.uri)
        var matched = forwarded.matchedPath
        if forwarded.stripPrefix, forwarded.pathPrefix != "/" {
            let rest = String(Substring(matched.utf8.dropFirst(forwarded.pathPrefix.utf8.count)))
            matched = rest.hasPrefix("/") ? rest : "/" + rest
        }
        if !strict, hasMalformedEscape(head.uri) {
            // Known bug (docs/fuzzing.md): `RequestPath.validate` takes the two bytes after any
            // `%` as its escape, so `%6?` hides the `?` and the router matches the path plus part
            // of the query. Until the path policy refuses malformed escapes, only check that the
            // upstream's path is where the router's starts.
            guard matched.hasPrefix(forwardedPath) else { fatalError("the upstream gets path \(forwardedPath), the router matched \(forwarded.matchedPath)") }
        } else {
            guard forwardedPath == matched else { fatalError("the upstream gets path \(forwardedPath), the router matched \(forwarded.matchedPath)") }
        }
        // No dot segment reaches the upstream, in any spelling (a stripped prefix's included).
        for segment in forwardedPath.split(separator: "/", omittingEmptySubsequences: false) {
            let decoded = (segment.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").lowercased()
                .replacingOccurrences(of: "%2e", with: ".")
            if decoded == "." || decoded == ".." { fatalError("a dot segment reaches the upstream: \(forwarded.uri) for \(head.uri)") }
        }
        if strict, fragment { fatalError("a fragment is forwarded: \(forwarded.uri)") }
        let normalised = normalise(forwarded.matchedPath, segmentParameters: false, mergeSlashes: false)
        // Prefixes match in any letter case (`PathPolicy.caseSensitive` is off here).
        guard prefixMatches(forwarded.pathPrefix.lowercased(), normalised.lowercased()) else {
            fatalError("\(forwarded.matchedPath) matched \(forwarded.pathPrefix) but normalises to \(normalised)")
        }
        if strict {
            let policy = normalise(forwarded.matchedPath, segmentParameters: true, mergeSlashes: true)
            var normalisedHead = head
            normalisedHead.uri = policy
            let other = expectedRoute(normalisedHead, path: policy)
            guard other.name == forwarded.routeName else {
                fatalError("\(head.uri) routes to \(forwarded.routeName); normalised to \(policy) it would route to \(other)")
            }
        }

        // Identity headers.
        let fields = forwarded.fields
        for mapping in forwarded.identityHeaders {
            let name = mapping.header.lowercased()
            let carrying = fields.filter { $0.name.lowercased() == name }
            if let identity, let value = RequestHeadPath.claimValue(mapping.claim, of: identity) {
                guard carrying.count == 1, carrying[0].value == value else { fatalError("\(mapping.header) is \(carrying), not the token's") }
            } else {
                guard carrying.isEmpty else { fatalError("\(mapping.header) reaches the upstream from the client: \(carrying)") }
            }
            if strict {
                func fold(_ text: String) -> String { String(text.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }) }
                let spoofed = fields.filter { $0.name.lowercased() != name && fold($0.name) == fold(name) }
                guard spoofed.isEmpty else { fatalError("\(spoofed) reaches the upstream; a framework reads it as \(mapping.header)") }
            }
        }

        // Framing.
        let lengths = fields.filter { $0.name.lowercased() == "content-length" }
        let codings = fields.filter { $0.name.lowercased() == "transfer-encoding" }
        if forwarded.isChunked {
            guard lengths.isEmpty, codings.count == 1, codings[0].value == "chunked" else { fatalError("chunked, but framed by \(lengths) \(codings)") }
        } else {
            guard codings.isEmpty, lengths.count <= 1 else { fatalError("framing fields \(lengths) \(codings)") }
            if request.complete {
                let declared = lengths.first.flatMap { Int($0.value) } ?? 0
                guard declared == request.body.count else { fatalError("Content-Length \(lengths) for a body of \(request.body.count) bytes") }
            }
        }
        let bodied = forwarded.isChunked || lengths.contains { $0.value != "0" }
        let mustClose = head.method == .HEAD || (bodied && ![HTTPMethod.POST, .PUT, .PATCH].contains(head.method))
        guard forwarded.closesConnection == mustClose else {
            fatalError("\(head.method) with\(bodied ? "" : "out") a body: Connection: close is \(forwarded.closesConnection ? "sent" : "not sent")")
        }
        guard request.complete else { return }

        // The upstream parses what it is sent to the same request.
        let sent = bytes + forwarded.bodyBytes(bodyParts(request.body))
        let reparsed = decode(sent)
        guard reparsed.count == 1, reparsed[0].complete else {
            fatalError("the upstream head does not parse as one request:\n\(String(decoding: sent, as: UTF8.self))")
        }
        let again = reparsed[0]
        guard again.head.method == forwarded.method, again.head.uri == forwarded.uri, again.body == request.body else {
            fatalError("re-parsed: \(again.head.method) \(again.head.uri) \(again.body.count) bytes; sent \(forwarded.method) \(forwarded.uri) \(request.body.count)")
        }
        let reparsedFields = again.head.headers.map { ($0.name, $0.value) }
        let written = fields + (forwarded.closesConnection ? [(name: "Connection", value: "close")] : [])
        guard reparsedFields.map({ $0.0 }) == written.map({ $0.name }), reparsedFields.map({ $0.1 }) == written.map({ $0.value }) else {
            fatalError("the upstream reads fields \(reparsedFields), the gateway wrote \(written)")
        }
    }

    /// The body in parts of varying size, as a client's body arrives.
    static func bodyParts(_ body: [UInt8]) -> [ByteBuffer] {
        var parts: [ByteBuffer] = []
        var start = 0
        var size = 1
        while start < body.count {
            let end = min(body.count, start + size)
            parts.append(ByteBuffer(bytes: body[start..<end]))
            start = end
            size = size * 3 + 1
        }
        return parts
    }

    /// Whether the target's path has a `%` not followed by two hex digits.
    static func hasMalformedEscape(_ uri: String) -> Bool {
        let bytes = Array(uri.utf8)
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
            guard index + 2 < bytes.count, hex(bytes[index + 1]) != nil, hex(bytes[index + 2]) != nil else { return true }
        }
        return false
    }

    /// A target's path (up to `?`; today's check also stops at `#`) and whether a fragment follows.
    static func pathOf(_ uri: String) -> (String, Bool) {
        let utf8 = Array(uri.utf8)
        let end = utf8.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? utf8.count
        return (String(decoding: utf8[..<end], as: UTF8.self), utf8.contains(UInt8(ascii: "#")))
    }

    // MARK: An independent reading of the route table

    struct Expected: CustomStringConvertible {
        var name: String?
        var status: Int
        var description: String { name.map { "route \($0)" } ?? "\(status)" }
    }

    /// `path`: the path the router matches (after the path policy).
    static func expectedRoute(_ head: HTTPRequestHead, path: String) -> Expected {
        // The first Host, without the spaces and tabs around it (not part of a field value), port
        // and a trailing dot, lower-cased.
        var host = head.headers.first(name: "host").map { raw -> String in
            let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
            let bytes = Array(raw.utf8)
            let start = bytes.firstIndex { !isSpace($0) } ?? bytes.endIndex
            let end = bytes.lastIndex { !isSpace($0) }.map { $0 + 1 } ?? start
            let value = String(decoding: bytes[start..<max(start, end)], as: UTF8.self)
            if value.hasPrefix("[") { return String(value.dropFirst().prefix { $0 != "]" }).lowercased() }
            let name = String(value.prefix { $0 != ":" }).lowercased()
            return name.hasSuffix(".") ? String(name.dropLast()) : name
        }
        if host?.isEmpty == true { host = nil }
        var allowed: [String] = []
        func scan(_ candidates: [Route]) -> Route? {
            // Longest prefix first (in any letter case), file order among equals; only routes with
            // the longest matching prefix count: matching the path but not the method is a 405.
            let ordered = candidates.enumerated().sorted { ($0.element.prefix.utf8.count, -$0.offset) > ($1.element.prefix.utf8.count, -$1.offset) }
            var longest: Int?
            for (_, route) in ordered where prefixMatches(route.prefix.lowercased(), path.lowercased()) {
                if let longest, route.prefix.utf8.count < longest { break }
                longest = route.prefix.utf8.count
                guard let methods = route.methods else { return route }
                if methods.contains(head.method.rawValue) { return route }
                allowed += methods
            }
            return nil
        }
        if let host {
            let hosted = routes.filter { $0.host == host }
            if let route = scan(hosted) { return Expected(name: route.name, status: 200) }
            if !allowed.isEmpty { return Expected(name: nil, status: 405) }
        }
        if let route = scan(routes.filter { $0.host == nil }) { return Expected(name: route.name, status: 200) }
        return Expected(name: nil, status: allowed.isEmpty ? 404 : 405)
    }

    /// The prefix ends the path, or a segment of it, or is followed by a format suffix on its
    /// last segment (`.json`, `.json/`).
    static func prefixMatches(_ prefix: String, _ path: String) -> Bool {
        if prefix == "/" { return path.hasPrefix("/") }
        guard path.hasPrefix(prefix) else { return false }
        let rest = String(path.dropFirst(prefix.count))
        if rest.isEmpty || rest.hasPrefix("/") { return true }
        guard rest.hasPrefix(".") else { return false }
        let slashes = rest.filter { $0 == "/" }.count
        return slashes == 0 || (slashes == 1 && rest.hasSuffix("/"))
    }

    /// RFC 3986 §6.2.2 normalisation of a path: percent-encoded unreserved bytes decoded, dot
    /// segments removed; optionally `;params` ignored when deciding what is a dot segment (as
    /// Tomcat and Spring do) and empty segments merged.
    static func normalise(_ path: String, segmentParameters: Bool, mergeSlashes: Bool) -> String {
        var decoded: [UInt8] = []
        let bytes = Array(path.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hex(bytes[index + 1]), let low = hex(bytes[index + 2]) {
                let value = UInt8(high * 16 + low)
                let unreserved = (value >= 0x41 && value <= 0x5A) || (value >= 0x61 && value <= 0x7A) || (value >= 0x30 && value <= 0x39)
                    || value == UInt8(ascii: "-") || value == UInt8(ascii: ".") || value == UInt8(ascii: "_") || value == UInt8(ascii: "~")
                if unreserved {
                    decoded.append(value)
                    index += 3
                    continue
                }
            }
            decoded.append(bytes[index])
            index += 1
        }
        var output: [[UInt8]] = []
        let segments = decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        for (position, segment) in segments.enumerated() {
            let last = position == segments.count - 1
            let bare = segmentParameters ? Array(segment.prefix { $0 != UInt8(ascii: ";") }) : Array(segment)
            if bare == Array(".".utf8) {
                if last { output.append([]) }
            } else if bare == Array("..".utf8) {
                if !output.isEmpty { output.removeLast() }
                if last { output.append([]) }
            } else if segment.isEmpty && mergeSlashes && !last {
                continue
            } else {
                output.append(Array(segment))
            }
        }
        return "/" + output.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }

    private static func hex(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A")) + 10
        default: nil
        }
    }

    // MARK: Seeds

    static let seeds: [[UInt8]] = [
        "GET /api/users?id=1 HTTP/1.1\r\nHost: gw.test\r\nX-Auth-Subject: admin\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        "POST /api/v2/orders HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\r\nhello\u{1}",
        "POST /public/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "DELETE /admin/users/1 HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET /public/..;/admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET /public/%2e%2e/admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET /%61dmin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET //admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET /api.json HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "GET /public#/../admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "DELETE /ops/job HTTP/1.1\r\nHost: Internal.Test:8080\r\nHost: other.test\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: internal.test\r\nX_Auth_Subject: admin\r\n\r\n\u{1}",
        "GET / HTTP/1.0\r\n\r\nGET /api HTTP/1.1\r\nHost: a\r\n\r\n",
        "PUT /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET /public HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://gw.test/api HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ].map { Array($0.utf8) }
}
