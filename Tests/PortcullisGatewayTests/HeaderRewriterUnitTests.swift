@testable import PortcullisGateway
import NIOCore
import NIOHTTP1
import PortcullisJOSE
import Testing

@Suite("header rewriting")
struct HeaderRewriterUnitTests {
    func route(_ extra: String = "") throws -> RouteConfig {
        try GatewayConfig.parse(yaml: """
        listen: 127.0.0.1:1
        routes:
          - name: r
            path_prefix: /api
            strip_prefix: true
            upstream: {targets: [127.0.0.1:1]}
        \(extra)
        """, file: "t.yaml").routes[0]
    }

    let token = VerifiedToken(issuerName: "main", issuer: "https://iss", subject: "alice\r\nX-Evil: 1", jwtID: "j", clientID: "cli",
                              audiences: ["a"], scopes: ["read", "write"], expiresAt: 0, notBefore: nil, issuedAt: nil,
                              keyID: "k", algorithm: .ES256, claims: ["tenant": "acme", "roles": ["a", "b"], "n": 5])

    @Test("hop-by-hop headers and Connection-listed headers are dropped; an untrusted client's X-Forwarded-For and Forwarded are replaced by its address")
    func hopByHop() throws {
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/x?q=1", headers: HTTPHeaders([
            ("Host", "h.test"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Upgrade", "h2c"), ("X-Forwarded-For", "10.0.0.1"), ("Proxy-Authorization", "Basic x"),
            ("Forwarded", "for=10.0.0.1"),
        ]))
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: .init(route: try route(), identityHeaders: IdentityHeader.defaults), identity: nil,
                                                 requestID: "rid", client: .init(address: "192.0.2.7", isTLS: false))
        for name in ["connection", "x-secret", "keep-alive", "te", "upgrade", "proxy-authorization"] {
            #expect(out.headers[name].isEmpty, "\(name) should be removed")
        }
        #expect(out.headers["x-forwarded-for"] == ["192.0.2.7"])
        #expect(out.headers["forwarded"] == ["for=192.0.2.7;proto=http;host=h.test"])
        #expect(out.uri == "/x?q=1")
        #expect(out.headers["x-request-id"] == ["rid"])
    }

    @Test("Forwarded: an IPv6 client and a host that is not a token are quoted")
    func forwardedQuoting() throws {
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api", headers: ["Host": "127.0.0.1:8080"])
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: .init(route: try route(), identityHeaders: []), identity: nil,
                                                 requestID: "rid", client: .init(address: "::1", isTLS: true))
        #expect(out.headers["forwarded"] == ["for=\"[::1]\";proto=https;host=\"127.0.0.1:8080\""])
        #expect(out.headers["x-forwarded-host"] == ["127.0.0.1:8080"])
    }

    @Test("a reused field list: its storage serves again once unique, and a head still held never changes")
    func reusedFields() throws {
        let client = HeaderRewriter.ClientInfo(address: "192.0.2.7", isTLS: false)
        let policy = HeaderRewriter.Policy(route: try route(), identityHeaders: [])
        func rewrite(_ value: String, extra: Int = 0, reusing storage: consuming [(name: String, value: String)] = []) -> UpstreamRequestHead {
            let fields = [("Host", "h.test"), ("X-A", value)] + (0..<extra).map { ("X-Extra-\($0)", "e") }
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api", headers: HTTPHeaders(fields))
            return HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: policy, identity: nil, requestID: "r-" + value, client: client,
                                                  reusing: consume storage)
        }
        // Shared: the held head keeps its fields.
        let held = rewrite("1")
        let next = rewrite("2", reusing: held.fields)
        #expect(held.headers["x-a"] == ["1"] && held.headers["x-request-id"] == ["r-1"])
        #expect(next.headers["x-a"] == ["2"] && next.headers["x-request-id"] == ["r-2"])
        #expect(next.fields.count == held.fields.count)

        // Unique: the same buffer, rewritten. (Its capacity tells: a large list's storage kept for
        // a small request, where a new allocation would be sized for the small one.)
        let storage = rewrite("3", extra: 40).fields
        let capacity = storage.capacity
        let reused = rewrite("4", reusing: consume storage)
        #expect(reused.fields.capacity == capacity)
        #expect(reused.fields.count < capacity / 2)
        #expect(reused.headers["x-a"] == ["4"] && reused.headers["x-request-id"] == ["r-4"])
        #expect(reused.headers["x-extra-0"].isEmpty)
    }

    @Test("Forwarded on one connection follows each request's Host")
    func forwardedPerRequest() throws {
        let client = HeaderRewriter.ClientInfo(address: "192.0.2.7", isTLS: false)
        let policy = HeaderRewriter.Policy(route: try route(), identityHeaders: [])
        func forwarded(_ host: String?) -> [String] {
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api", headers: HTTPHeaders(host.map { [("Host", $0)] } ?? []))
            return HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: policy, identity: nil, requestID: "r", client: client).headers["forwarded"]
        }
        #expect(forwarded("a.test") == ["for=192.0.2.7;proto=http;host=a.test"])
        #expect(forwarded("a.test") == ["for=192.0.2.7;proto=http;host=a.test"])
        #expect(forwarded("b.test:8080") == ["for=192.0.2.7;proto=http;host=\"b.test:8080\""])
        #expect(forwarded(nil) == ["for=192.0.2.7;proto=http"])
        #expect(forwarded("a.test") == ["for=192.0.2.7;proto=http;host=a.test"])
    }

    @Test("identity headers come only from the token, with control characters neutralised")
    func identity() throws {
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api", headers: HTTPHeaders([
            ("x-auth-subject", "mallory"), ("X-Tenant", "evil"),
        ]))
        let mapping = IdentityHeader.defaults + [IdentityHeader(claim: "tenant", header: "X-Tenant"), IdentityHeader(claim: "roles", header: "X-Roles"),
                                                 IdentityHeader(claim: "n", header: "X-N")]
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: .init(route: try route(), identityHeaders: mapping), identity: token,
                                                 requestID: "rid", client: .init(address: nil, isTLS: true))
        #expect(out.headers["x-auth-subject"] == ["alice  X-Evil: 1"])
        #expect(out.headers["x-auth-scopes"] == ["read write"])
        #expect(out.headers["x-auth-client-id"] == ["cli"])
        #expect(out.headers["x-tenant"] == ["acme"])
        #expect(out.headers["x-roles"] == ["a b"])
        #expect(out.headers["x-n"] == ["5"])
        #expect(out.headers["x-forwarded-proto"] == ["https"])
        #expect(out.uri == "/")
    }

    @Test("an array claim's element holding a space, a quote, a control character or a non-ASCII space is quoted, so it cannot read as two elements")
    func arrayElementsStayWhole() throws {
        // An issuer that lets users name their own groups signs `["staff admin", "x"]` for a user who
        // named a group "staff admin"; joined plainly, the upstream would read a member of `admin`.
        let crafted = VerifiedToken(issuerName: "main", issuer: "https://iss", subject: "u", jwtID: nil, clientID: nil,
                                    audiences: ["a"], scopes: ["read write", "x"], expiresAt: 0, notBefore: nil, issuedAt: nil,
                                    keyID: nil, algorithm: .ES256,
                                    claims: ["groups": ["staff admin", "x", "", "say \"hi\"\\", "a\nb", ["k": "v"], "staff\u{A0}admin"], "plain": ["a", "b"]])
        let mapping = IdentityHeader.defaults + [IdentityHeader(claim: "groups", header: "X-Groups"), IdentityHeader(claim: "plain", header: "X-Plain")]
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api", headers: HTTPHeaders())
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: .init(route: try route(), identityHeaders: mapping), identity: crafted,
                                                 requestID: "rid", client: .init(address: nil, isTLS: true))
        #expect(out.headers["x-groups"] == [#""staff admin" x "" "say \"hi\"\\" "a b" "{\"k\":\"v\"}" "staff\#u{A0}admin""#])
        #expect(out.headers["x-auth-scopes"] == [#""read write" x"#])
        #expect(out.headers["x-plain"] == ["a b"])
        #expect(SpaceSeparatedList.encode(["read", "write"]) == "read write")
    }
    @Test("body framing: chunked is re-declared, a bodiless POST gets Content-Length 0")
    func framing() throws {
        let chunked = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api", headers: HTTPHeaders([("Transfer-Encoding", "chunked")]))
        let a = HeaderRewriter.upstreamRequest(chunked, uri: "/api", policy: .init(route: try route(), identityHeaders: []), identity: nil, requestID: "r", client: .init(address: nil, isTLS: false))
        #expect(a.headers["transfer-encoding"] == ["chunked"])
        #expect(a.isChunked)
        let empty = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api", headers: HTTPHeaders())
        let b = HeaderRewriter.upstreamRequest(empty, uri: "/api", policy: .init(route: try route(), identityHeaders: []), identity: nil, requestID: "r", client: .init(address: nil, isTLS: false))
        #expect(b.headers["content-length"] == ["0"])
        #expect(!b.isChunked)
    }

    @Test("a client naming Content-Length or Host in Connection cannot strip them (smuggling)")
    func framingNotConnectionListed() throws {
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api", headers: HTTPHeaders([
            ("Host", "h.test"), ("Connection", "content-length, host, transfer-encoding"), ("Content-Length", "60"),
        ]))
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: .init(route: try route(), identityHeaders: []), identity: nil,
                                                 requestID: "r", client: .init(address: nil, isTLS: false))
        #expect(out.headers["content-length"] == ["60"])
        #expect(out.headers["host"] == ["h.test"])
        #expect(out.headers["transfer-encoding"].isEmpty)
    }

    /// Found by the request-head fuzz target: llhttp leaves `Content-Length:3 ` with its space.
    @Test("the forwarded Content-Length is the bare number, whatever whitespace the client put around it")
    func contentLengthTrimmed() throws {
        let head = HTTPRequestHead(version: .http1_1, method: .PUT, uri: "/api", headers: HTTPHeaders([("Content-Length", "3 ")]))
        let out = HeaderRewriter.upstreamRequest(head, uri: "/api", policy: .init(route: try route(), identityHeaders: []), identity: nil,
                                                 requestID: "r", client: .init(address: nil, isTLS: false))
        #expect(out.headers["content-length"] == ["3"])
        #expect(HeaderRewriter.trimmedWhitespace("\t 42 ") == "42")
        #expect(HeaderRewriter.trimmedWhitespace("42") == "42")
    }

    @Test("route rules may not touch the framing fields, set connection-level fields or control characters", arguments: [
        "    request_headers: {remove: [Content-Length]}", "    request_headers: {set: {Transfer-Encoding: chunked}}",
        "    response_headers: {set: {content-length: '0'}}", "    response_headers: {set: {Connection: keep-alive}}",
        "    request_headers: {set: {Upgrade: h2c}}", "    response_headers: {set: {X-A: \"a\\x01b\"}}",
        "    request_headers: {set: {X-A: \"a\\x7Fb\"}}",
    ])
    func framingRulesRefused(_ rule: String) {
        #expect(throws: (any Error).self) { try route(rule) }
    }

    /// Parses `response`'s head as the upstream side does, rewrites it for the client with
    /// `route`'s policy and writes it as the client would receive it.
    func relay(_ response: String, route: RouteConfig, extra: HTTPHeaders? = nil,
               version: HTTPVersion = .http1_1, method: HTTPMethod = .GET) throws -> String {
        var parser = UpstreamResponseParser()
        parser.expectResponse(to: method)
        parser.append(ByteBuffer(string: response))
        guard case .head(let head) = try parser.next() else {
            Issue.record("no head")
            return ""
        }
        let out = HeaderRewriter.clientResponse(head, policy: .init(route: route, identityHeaders: []), requestID: "rid", extra: extra, version: version)
        var writer = HTTP1Writer()
        let framing = HTTP1Writer.responseFraming(out, bodyless: method == .HEAD)
        return String(buffer: writer.response(out, framing: framing, allocator: ByteBufferAllocator()))
    }

    @Test("responses reach the client byte for byte, minus hop-by-hop and Connection-listed fields, length normalised")
    func response() throws {
        let r = try route()
        let out = try relay("HTTP/1.1 201 Created\r\nServer: s\r\nContent-Length: 5, 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: h\r\nX-A:  spaced \t\r\nKeep-Alive: timeout=5\r\nX-Request-Id: upstream\r\n\r\nhello",
                            route: r)
        #expect(out == "HTTP/1.1 201 Created\r\nServer: s\r\nX-A: spaced\r\nContent-Length: 5\r\nX-Request-Id: rid\r\n\r\n")
        // Unframed for an HTTP/1.1 client: chunked; the upstream's Transfer-Encoding never passes as is.
        let chunked = try relay("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", route: r)
        #expect(chunked == "HTTP/1.1 200 OK\r\nX-Request-Id: rid\r\nTransfer-Encoding: chunked\r\n\r\n")
        let old = try relay("HTTP/1.1 200 OK\r\n\r\n", route: r, version: .http1_0)
        #expect(old == "HTTP/1.0 200 OK\r\nX-Request-Id: rid\r\n\r\n")
        let head = try relay("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", route: r, method: .HEAD)
        #expect(head == "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Request-Id: rid\r\n\r\n")
    }

    @Test("a response with more than 64 fields passes every one in order, minus those dropped")
    func manyResponseFields() throws {
        let names = (0..<70).map { "X-F\($0)" }
        let head = names.map { "\($0): v\r\n" }.joined()
        let out = try relay("HTTP/1.1 200 OK\r\nConnection: X-F3, x-f66\r\n" + head + "Content-Length: 0\r\n\r\n", route: try route())
        let kept = names.filter { $0 != "X-F3" && $0 != "X-F66" }.map { "\($0): v\r\n" }.joined()
        #expect(out == "HTTP/1.1 200 OK\r\n" + kept + "Content-Length: 0\r\nX-Request-Id: rid\r\n\r\n")
    }

    @Test("a route may set X-Request-Id on responses")
    func routeSetsRequestID() throws {
        let out = try relay("HTTP/1.1 204 No Content\r\n\r\n", route: try route("    response_headers: {set: {x-request-id: fixed}}"))
        #expect(out == "HTTP/1.1 204 No Content\r\nx-request-id: fixed\r\n\r\n")
    }

    @Test("field selections keep ascending order across the first 64 and beyond")
    func fieldSelection() {
        var selection = FieldSelection()
        for index in [0, 5, 63, 64, 100] { selection.insert(index) }
        var seen: [Int] = []
        selection.forEach { seen.append($0) }
        #expect(seen == [0, 5, 63, 64, 100])
    }

    @Test("the gateway's response fields replace the upstream's: route rules, rate-limit state")
    func responseRules() throws {
        var r = try route("    response_headers: {set: {X-Frame-Options: DENY}, remove: [Server]}")
        r.rateLimit = "tiny"
        let out = try relay("HTTP/1.1 200 OK\r\nserver: s\r\nx-frame-options: SAMEORIGIN\r\nRateLimit-Limit: 1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
                            route: r, extra: ["RateLimit-Limit": "10"])
        #expect(out == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nX-Request-Id: rid\r\nX-Frame-Options: DENY\r\nRateLimit-Limit: 10\r\n\r\n")
    }
}

extension UpstreamRequestHead {
    /// The fields, for lookups by name in expectations.
    var headers: HTTPHeaders { HTTPHeaders(fields) }
}

@Suite("header name sets")
struct HeaderNameSetUnitTests {
    @Test("a set past 32 names of one length (a Connection list a peer wrote) still matches every name ignoring case, and nothing else")
    func largeSetsMatchExactly() {
        var set = HeaderNameSet([])
        let names = (0..<2_000).map { "X-\(String($0 + 10_000, radix: 16))" }
        for name in names { set.insert(name) }
        set.insert(names[0].uppercased())
        for name in names {
            #expect(set.contains(name) && set.contains(name.lowercased()) && set.contains(name.uppercased()))
        }
        #expect(!set.contains("X-zzzz") && !set.contains("X-271") && !set.contains("Y-2710"))
    }

    @Test("names match ignoring case; long names share a bucket without matching each other")
    func longNames() {
        let long = String(repeating: "x", count: 40_000)
        var set = HeaderNameSet(["X-Secret", long])
        set.insert(long + "y")
        #expect(set.contains("x-secret"))
        #expect(set.contains(long.uppercased()))
        #expect(set.contains(long + "Y"))
        #expect(!set.contains(long + "z"))
        #expect(!set.contains(String(repeating: "x", count: 39_999)))
        #expect(!set.contains("x-secre"))
        #expect(!HeaderNameSet([]).contains("anything"))
    }

    @Test("case folding covers A-Z only, for contiguous and non-contiguous bytes alike")
    func folding() {
        let received = Array("Chunked [X]".utf8)
        received.withUnsafeBytes { raw in
            #expect(HeaderNameSet.equalsIgnoringASCIICase(raw[0..<7], "chunked".utf8))
            #expect(HeaderNameSet.equalsIgnoringASCIICase(raw[0..<7], Array("chunked".utf8)))
            // '[' and ']' sit 0x20 below '{' and '}': only letters fold.
            #expect(!HeaderNameSet.equalsIgnoringASCIICase(raw[8...], "{x}".utf8))
            #expect(HeaderNameSet.equalsIgnoringASCIICase(raw[8...], "[x]".utf8))
            #expect(!HeaderNameSet.equalsIgnoringASCIICase(raw[0..<7], "chunkes".utf8))
            #expect(!HeaderNameSet.equalsIgnoringASCIICase(raw[0..<6], "chunked".utf8))
        }
        // A collection without contiguous storage takes the element-wise path.
        #expect(HeaderNameSet.equalsIgnoringASCIICase("CHUNKED".utf8.lazy.map { $0 }, "chunked".utf8))
        #expect(!HeaderNameSet.equalsIgnoringASCIICase("[X]".utf8.lazy.map { $0 }, "{x}".utf8))
    }
}


@Suite("header names with underscores")
struct UnderscoreHeaderUnitTests {
    private func forwarded(_ action: RequestPolicy.UnderscoreHeaders) throws -> [String] {
        let route = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\nroutes: [{name: r, path_prefix: /, upstream: {targets: ['127.0.0.1:1']}, request_headers: {set: {X-Env: prod}}}]",
                                            file: "t.yaml").routes[0]
        let policy = HeaderRewriter.Policy(route: route, identityHeaders: IdentityHeader.defaults, underscores: action)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: HTTPHeaders([
            ("Host", "h.test"), ("X_Auth_Subject", "admin"), ("x-auth_scopes", "all"), ("X_Forwarded_For", "1.2.3.4"),
            ("Transfer_Encoding", "chunked"), ("X_Custom", "1"), ("X-Plain", "2"), ("X_Env", "dev"), ("X_Forwarded_Prefix", "/evil"),
            ("X-Auth.Subject", "admin"), ("X~Auth~Scopes", "all"), ("X-Forwarded+For", "1.2.3.4"), ("X.Custom", "3"),
            ("X_Auth_Request_User", "admin"), ("X_Amzn_Oidc_Identity", "admin"), ("X_Ms_Client_Principal_Name", "admin"),
        ]))
        let facts = RequestHeadFacts(head.headers)
        #expect(facts.hasAmbiguousNames)
        let out = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: policy, identity: nil, requestID: "r",
                                                 client: .init(address: "192.0.2.1", isTLS: false), hasAmbiguousNames: facts.hasAmbiguousNames)
        return out.fields.map { $0.name.lowercased() }
    }

    @Test("drop (the default) forwards no name with an underscore, nor one with another character than a letter, a digit or '-' (lighttpd reads X-Auth.Subject as X_AUTH_SUBJECT)")
    func drop() throws {
        let names = try forwarded(.drop)
        #expect(!names.contains { $0.contains("_") })
        for spoof in ["x-auth.subject", "x~auth~scopes", "x-forwarded+for", "x.custom"] {
            #expect(!names.contains(spoof), "\(spoof) was forwarded")
        }
        #expect(names.contains("x-plain"))
        #expect(!AmbiguousFieldName.isAmbiguous("X-Plain-9") && AmbiguousFieldName.isAmbiguous("X-Auth.Subject"))
        #expect(AmbiguousFieldName.isAmbiguous("x-\u{00E9}") && AmbiguousFieldName.isAmbiguous("a@b") && AmbiguousFieldName.isAmbiguous("a[b"))
    }

    @Test("allow forwards them, except those an upstream would read as an identity, forwarding, framing or route-set field")
    func allow() throws {
        let names = try forwarded(.allow)
        #expect(names.contains("x_custom") && names.contains("x.custom"))
        for spoof in ["x_auth_subject", "x-auth_scopes", "x_forwarded_for", "transfer_encoding", "x_env", "x_forwarded_prefix",
                      "x-auth.subject", "x~auth~scopes", "x-forwarded+for", "x_auth_request_user", "x_amzn_oidc_identity",
                      "x_ms_client_principal_name"] {
            #expect(!names.contains(spoof), "\(spoof) was forwarded")
        }
    }

    @Test("reject refuses the request before routing")
    func reject() {
        var policy = RequestPolicy()
        policy.headersWithUnderscores = .reject
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: HTTPHeaders([("Host", "h"), ("A_B", "1")]))
        guard case .failure(let refusal) = Admission.checkHead(head, facts: RequestHeadFacts(head.headers), policy: policy) else {
            Issue.record("accepted")
            return
        }
        #expect(refusal.description.contains("underscore"))
    }

    @Test("an HTTP/1.1 head's values lose the spaces and tabs around them before anything reads them; names, order and repeated fields stay, and a head without any is left as it is")
    func optionalWhitespaceTrimmed() {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/x", headers: HTTPHeaders([
            ("Host", "api.example \t"), ("X-Api-Key", "key \t "), ("X-Empty", " \t"), ("X-Api-Key", "\tsecond"), ("Accept", "a b"),
        ]))
        #expect(RequestHeadFacts(head.headers).hasPaddedValues)
        head.headers = OptionalWhitespace.trimmed(head.headers)
        let facts = RequestHeadFacts(head.headers)
        #expect(head.headers.map { "\($0.name)=\($0.value)" } == ["Host=api.example", "X-Api-Key=key", "X-Empty=", "X-Api-Key=second", "Accept=a b"])
        #expect(facts.host == "api.example")
        #expect(!facts.hasPaddedValues)
        let plain = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/x", headers: HTTPHeaders([("Host", "h"), ("Accept", "a b")]))
        #expect(!RequestHeadFacts(plain.headers).hasPaddedValues)
        #expect(OptionalWhitespace.pads("k ") && OptionalWhitespace.pads("\tk") && !OptionalWhitespace.pads("k") && !OptionalWhitespace.pads(""))
        // A space after a prepended mark (U+0600) is one grapheme with it: trimmed by bytes all the same.
        let prepended = OptionalWhitespace.trimmed(HTTPHeaders([("X-Api-Key", "k\u{0600} \t"), ("X-Only", " \t ")]))
        #expect(prepended.map(\.value) == ["k\u{0600}", ""])
        #expect(!RequestHeadFacts(prepended).hasPaddedValues)
    }
}
