@testable import PortcullisGateway
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE
import Testing

@Suite("bearer extraction, paths, request ids")
struct RequestPathUnitTests {
    @Test("RFC 6750 bearer extraction", arguments: [
        ("Bearer abc.def-ghi_jkl~+/==", BearerCredential.token("abc.def-ghi_jkl~+/==")),
        ("bearer abc", .token("abc")),
        ("BEARER   abc  ", .token("abc")),
        ("Bearer a b", .token("a b")),
        ("Basic dXNlcjpwYXNz", .absent),
        ("Bearer", .malformed),
        ("Bearer ", .malformed),
        ("Bearerabc", .malformed),
    ])
    func bearer(_ header: String, _ expected: BearerCredential) {
        #expect(BearerExtractor.parse(header) == expected)
    }

    @Test("b64token syntax", arguments: [
        ("abc.def-ghi_jkl~+/==", true), ("a", true), ("a=", true),
        ("a b", false), ("ab=c", false), ("a\"b", false), ("=", false), ("", false), ("a,b", false), ("é", false),
    ])
    func b64token(_ token: String, _ valid: Bool) {
        #expect(BearerExtractor.isB64Token(Substring(token)) == valid)
    }

    @Test("an access_token query parameter is found in every spelling an upstream may read as it (escaped, PHP-mangled, any case, an array); other names are not", arguments: [
        ("/a?access_token=x", true), ("/a?b=1&access_token", true), ("/a?ACCESS_TOKEN=x", true), ("/a?access%5Ftoken=x", true),
        ("/a?access.token=x", true), ("/a?access+token=x", true), ("/a?access_token[]=x", true), ("/a?%61ccess_token=x", true),
        ("/a?access_token%00x=1", true), ("/a", false), ("/a?token=x", false), ("/a?access_tokens=x", false), ("/a?my_access_token=x", false),
        ("/a?x=access_token", false), ("/a?page=2", false), ("/a?b=1;access_token=x", true), ("/a?access[token=x", true),
        ("/a?access_token%00%FF=T", true), ("/a?access_token%00%zz=T", true), ("/a?access_token%00%=T", true), ("/a?access_token%=T", false),
    ])
    func accessTokenInQuery(_ uri: String, _ named: Bool) {
        #expect(BearerExtractor.queryNamesAccessToken(uri) == named)
    }

    @Test("cutting a strip_prefix route's prefix leaves a dot segment for /p., /p.., /p..;x and /p.;/ — not for /p.json, /p/.., /p.x.")
    func stripLeavesDotSegment() {
        for path in ["/p.", "/p..", "/p../", "/p..;x/", "/p.;/", "/p..?q", "/P.."] {
            #expect(Admission.cutLeavesDotSegment(Substring(path), prefix: "/p"), "\(path)")
        }
        for path in ["/p.json", "/p", "/p/..", "/p.x.", "/p...", "/p.json;.."] {
            #expect(!Admission.cutLeavesDotSegment(Substring(path), prefix: "/p"), "\(path)")
        }
    }

    @Test("rate-limit keys from subjects, clients and header values tell canonically equivalent spellings apart (the Kelvin sign is not K); ASCII keys are as they were")
    func rateLimitKeysAreExact() {
        #expect(RateLimitKey.exact("Kate") == "Kate" && RateLimitKey.exact("a/b:c") == "a/b:c")
        #expect(RateLimitKey.exact("\u{212A}ate") != RateLimitKey.exact("Kate"))
        #expect(RateLimitKey.exact("jose\u{0301}") != RateLimitKey.exact("jos\u{00E9}"))
        #expect(RateLimitKey.exact("100%") != RateLimitKey.exact("100%25"))
        #expect(RateLimitKey.exact("\u{212A}").utf8.allSatisfy { $0 < 0x80 })
    }

    @Test("a _method query parameter is found after ';' too (Rack 2 splits on it), and in PHP's spellings")
    func methodOverrideSeparators() {
        #expect(Admission.methodOverrides(nil, uri: "/x?a=1;_method=DELETE") == ["DELETE"])
        #expect(Admission.methodOverrides(nil, uri: "/x?_method[]=PUT&b=2") == ["PUT"])
        #expect(Admission.methodOverrides(nil, uri: "/x?_method[=PUT") == nil)  // PHP reads it as _method_
        #expect(Admission.methodOverrides(nil, uri: "/x?a=method") == nil)
        // PHP keeps a malformed escape and bytes that are not UTF-8; the name is still cut at the NUL.
        #expect(Admission.methodOverrides(nil, uri: "/x?_method%00%FF=DELETE") == ["DELETE"])
        // A header-keyed policy named with `_` still sees `X-Api-Key` beside `X_Api_Key` as one field twice.
        let twice = HTTPHeaders([("X-Api-Key", "a"), ("X_Api_Key", "b")])
        #expect(RateLimitKey.isRepeated("x_api_key", in: twice, underscoresAsDashes: true))
        #expect(RateLimitKey.isRepeated("x-api-key", in: twice, underscoresAsDashes: true))
        #expect(!RateLimitKey.isRepeated("x-api-key", in: twice, underscoresAsDashes: false))
    }

    @Test("no header is absent, two headers are ambiguous")
    func headerCount() {
        #expect(BearerExtractor.extract(from: HTTPHeaders()) == .absent)
        #expect(BearerExtractor.extract(from: HTTPHeaders([("authorization", "Bearer a"), ("Authorization", "Bearer b")])) == .ambiguous)
    }

    @Test("the default path policy refuses what an upstream could resolve differently", arguments: [
        "/a/./b", "/a/../b", "/a/%2E%2E/b", "/a/..;x/b", "/a/.;/b", "/a/%2e%2E;/b", "/a%2fb", "/a%5Cb", "/a\\b",
        "/a;b", "/a#b", "/a?x#y", "/a%00", "/a%0", "/a%zz", "/a b", "/a\u{7F}", "/é", "*", "ftp://x/a", "http://u@x/a", "http:///a",
        "/a/..", "/..",
    ])
    func refusedTargets(_ target: String) {
        guard case .failure = RequestTarget.parse(target, policy: PathPolicy()) else {
            Issue.record("\(target) was accepted")
            return
        }
    }

    @Test("the default path policy normalises the rest; the query is kept as sent", arguments: [
        ("/a/b?x=../..", "/a/b", "/a/b?x=../.."),
        ("/", "/", "/"),
        ("/a/...", "/a/...", "/a/..."),
        ("/%61dmin", "/admin", "/admin"),
        ("/a%2a%7e", "/a%2A~", "/a%2A~"),
        ("//a///b//", "/a/b/", "/a/b/"),
        ("/a/%2e%2e%2e", "/a/...", "/a/..."),
        ("http://h.test", "/", "/"),
        ("HTTPS://h.test:8443/x/%41?q", "/x/A", "/x/A?q"),
    ])
    func normalisedTargets(_ target: String, _ path: String, _ uri: String) throws {
        let parsed = try RequestTarget.parse(target, policy: PathPolicy()).get()
        #expect(parsed.path == Substring(path))
        #expect(parsed.uri == uri)
    }

    @Test("a clean origin-form target is passed on as the same string")
    func cleanTargetUnchanged() throws {
        let target = "/api/v1/orders/42?expand=items"
        let parsed = try RequestTarget.parse(target, policy: PathPolicy()).get()
        #expect(parsed.uri == target)
        #expect(parsed.authority == nil)
    }

    @Test("policy options: resolve dot segments, refuse //, keep ; and escaped slashes")
    func policyOptions() throws {
        var policy = PathPolicy()
        policy.dotSegments = .resolve
        #expect(try RequestTarget.parse("/a/b/../c/./d", policy: policy).get().uri == "/a/c/d")
        #expect(try RequestTarget.parse("/a/b/..", policy: policy).get().uri == "/a/")
        #expect(try RequestTarget.parse("/a/..", policy: policy).get().uri == "/")
        #expect((try? RequestTarget.parse("/a/..;x/b", policy: policy).get()) == nil, "a ; is refused unless kept")
        policy.semicolons = .keep
        #expect(try RequestTarget.parse("/a/..;x/b", policy: policy).get().uri == "/b")
        #expect(try RequestTarget.parse("/a;v=1/b", policy: policy).get().uri == "/a;v=1/b")
        #expect((try? RequestTarget.parse("/..", policy: policy).get()) == nil, "above the root")
        policy.duplicateSlashes = .reject
        #expect((try? RequestTarget.parse("/a//b", policy: policy).get()) == nil)
        #expect(try RequestTarget.parse("/a/", policy: policy).get().uri == "/a/")
        policy.escapedSlashes = .keep
        #expect(try RequestTarget.parse("/a%2fb", policy: policy).get().uri == "/a%2Fb")
    }

    @Test("Host syntax: host[:port] or [v6][:port], nothing else", arguments: [
        ("a.test", true), ("A.Test:8080", true), ("[::1]:80", true), ("[::1]", true), ("10.0.0.1:1", true),
        ("a.test, b.test", false), ("a.test/x", false), ("a.test:", false), ("a.test:123456", false), ("a b", false),
        ("u@a.test", false), ("[::1", false), ("[zz]", false), (":80", false), ("a.test:80:80", false),
    ])
    func hostSyntax(_ value: String, _ valid: Bool) {
        #expect(HostHeader.isValid(value) == valid)
    }

    @Test("Host without port, lower-cased, IPv6 aware")
    func host() {
        #expect(HostHeader.name("API.Example.com:8443") == "api.example.com")
        #expect(HostHeader.name("[::1]:80") == "::1")
        #expect(HostHeader.name(nil) == nil)
        #expect(HostHeader.name("") == nil)
        #expect(HostHeader.name("Admin.Test.:80") == "admin.test", "a trailing dot names the same host")
        #expect(HostHeader.isValid("admin.test.:80"))
    }

    /// The build before keyed by the claim alone: a token of a second issuer naming the same
    /// client id spent the real client's budget (an attacker review).
    @Test("subject and client id keys count per issuer: another issuer's token naming the same client or subject has a key of its own")
    func keysPerIssuer() {
        func token(_ issuerName: String) -> VerifiedToken {
            VerifiedToken(issuerName: issuerName, issuer: "https://" + issuerName, subject: "alice", jwtID: nil, clientID: "demo-client",
                          audiences: ["api"], scopes: [], expiresAt: 2_000_000_000, notBefore: nil, issuedAt: nil, keyID: nil,
                          algorithm: .ES256, claims: [:])
        }
        for key in [RateLimitPolicy.Key.clientID, .subject] {
            let policy = RateLimitPolicy(name: "p", key: key, limit: 1, window: .seconds(1))
            let ours = RateLimitKey.value(for: policy, route: "r", identity: token("builtin"), headers: HTTPHeaders(), clientAddress: "10.0.0.1")
            let theirs = RateLimitKey.value(for: policy, route: "r", identity: token("partner"), headers: HTTPHeaders(), clientAddress: "10.0.0.1")
            #expect(ours != theirs, "\(key)")
        }
        let policy = RateLimitPolicy(name: "p", key: .clientID, limit: 1, window: .seconds(1))
        #expect(RateLimitKey.value(for: policy, route: "r", identity: token("builtin"), headers: HTTPHeaders(), clientAddress: nil) == "client:builtin/demo-client")
    }

    @Test("IPv6 clients count by their /64 (or the policy's prefix), an IPv4 client behind NAT64, 6to4 or Teredo by its IPv4 address; long header values by their hash")
    func keyShapes() {
        #expect(ClientNetwork.network(of: "2001:db8:1:2:aaaa:bbbb:cccc:dddd", prefix: 64) == "2001:db8:1:2::/64")
        #expect(ClientNetwork.network(of: "2001:db8:1:2:ffff::1", prefix: 64) == "2001:db8:1:2::/64")
        #expect(ClientNetwork.network(of: "2001:db8:1:2:ffff::1", prefix: 56) == "2001:db8:1::/56")
        #expect(ClientNetwork.network(of: "10.0.0.1", prefix: 64) == nil)
        // An IPv6 address standing for an IPv4 client counts as that client: by its /64, every
        // IPv4 client behind a NAT64 gateway shared one key, and a 6to4 host held 65 536 keys.
        let ip = RateLimitPolicy(name: "ip", key: .ip, limit: 1, window: .seconds(1))
        func key(_ address: String) -> String { RateLimitKey.value(for: ip, route: "r", identity: nil, headers: HTTPHeaders(), clientAddress: address) }
        #expect(key("64:ff9b::192.0.2.1") == "ip:192.0.2.1")
        #expect(key("64:ff9b::cb00:7109") == "ip:203.0.113.9")
        #expect(key("2002:c000:0201:1::1") == "ip:192.0.2.1")
        #expect(key("2002:c000:0201:ffff::1") == "ip:192.0.2.1")
        #expect(key("2001:0:4136:e378:8000:63bf:3fff:fdd2") == "ip:192.0.2.45", "Teredo: the client's address inverted")
        #expect(key("2001:db8:1:2::1") == "ip:2001:db8:1:2::/64", "a documentation address is no Teredo one")
        #expect(key("64:ff9b:0:0:1::1") == "ip:64:ff9b::/64", "outside the /96 it is an ordinary address")
        #expect(key("::ffff:192.0.2.7") == "ip:192.0.2.7", "an IPv4-mapped address is its IPv4 client")
        #expect(key("::ffff:1") == "ip:::/64", "the last 32 bits alone do not make a mapped address")
        let policy = RateLimitPolicy(name: "p", key: .header("x-key"), limit: 1, window: .seconds(1))
        let long = RateLimitKey.value(for: policy, route: "r", identity: nil,
                                      headers: HTTPHeaders([("X-Key", String(repeating: "k", count: 10_000))]), clientAddress: "10.0.0.1")
        #expect(long.hasPrefix("hdr:sha256:") && long.utf8.count == 11 + 64)
        #expect(RateLimitKey.value(for: policy, route: "r", identity: nil, headers: HTTPHeaders([("X-Key", "short")]), clientAddress: nil) == "hdr:short")
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: they stay IPv4 addresses.
        #expect(GatewayServer.unmapped("::ffff:127.0.0.9") == "127.0.0.9")
        #expect(GatewayServer.unmapped("::FFFF:10.1.2.3") == "10.1.2.3")
        #expect(GatewayServer.unmapped("::ffff:1") == "::ffff:1")
        #expect(GatewayServer.unmapped("2001:db8::1") == "2001:db8::1")
        #expect(RateLimitKey.value(for: ip, route: "r", identity: nil, headers: HTTPHeaders(), clientAddress: "2001:db8::7") == "ip:2001:db8::/64")
    }

    @Test("request ids: well-formed kept, others replaced; generated ones are 32 hex digits")
    func requestIDs() {
        #expect(RequestID.accept("abc-123_x.y:z") == "abc-123_x.y:z")
        #expect(RequestID.accept("has space") == nil)
        #expect(RequestID.accept(String(repeating: "a", count: 129)) == nil)
        let generated = RequestID.generate()
        #expect(generated.count == 32 && generated.allSatisfy(\.isHexDigit))
        #expect(RequestID.generate() != generated)
    }

    /// The build before wrote a per-process prefix and a counter: any upstream or client could
    /// count the requests a node served between two of its own.
    @Test("generated request ids carry no counter: consecutive ids are never numerically close, differ in about half their bits, and do not repeat")
    func requestIDsCarryNoCounter() {
        let ids = (0..<20_000).map { _ in RequestID.generate() }
        #expect(Set(ids).count == ids.count)
        func halves(_ id: String) -> (UInt64, UInt64) {
            (UInt64(id.prefix(16), radix: 16)!, UInt64(id.suffix(16), radix: 16)!)
        }
        var differingBits = 0
        for (previous, next) in zip(ids, ids.dropFirst()) {
            let (a, b) = (halves(previous), halves(next))
            #expect(max(a.0, b.0) - min(a.0, b.0) > 1 << 32 && max(a.1, b.1) - min(a.1, b.1) > 1 << 32, "\(previous) then \(next)")
            differingBits += (a.0 ^ b.0).nonzeroBitCount + (a.1 ^ b.1).nonzeroBitCount
        }
        let mean = Double(differingBits) / Double(ids.count - 1)
        #expect((60...68).contains(mean), "consecutive ids differ in \(mean) of 128 bits on average")
    }
}
