@testable import PortcullisGateway
import NIOHTTP1
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

    @Test("no header is absent, two headers are ambiguous")
    func headerCount() {
        #expect(BearerExtractor.extract(from: HTTPHeaders()) == .absent)
        #expect(BearerExtractor.extract(from: HTTPHeaders([("authorization", "Bearer a"), ("Authorization", "Bearer b")])) == .ambiguous)
    }

    @Test("paths with dot segments or encoded separators are refused", arguments: [
        ("/a/b?x=../..", true), ("/", true), ("/a/./b", false), ("/a/../b", false), ("/a/%2E%2E/b", false),
        ("/a%2fb", false), ("/a\\b", false), ("*", false), ("http://x/a", false), ("/a/..", false), ("/a/...", true),
    ])
    func paths(_ uri: String, _ accepted: Bool) {
        #expect((RequestPath.validate(uri) != nil) == accepted)
    }

    @Test("Host without port, lower-cased, IPv6 aware")
    func host() {
        #expect(RequestPath.host(HTTPHeaders([("Host", "API.Example.com:8443")])) == "api.example.com")
        #expect(RequestPath.host(HTTPHeaders([("Host", "[::1]:80")])) == "::1")
        #expect(RequestPath.host(HTTPHeaders()) == nil)
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
}
