@testable import PortcullisGateway
import Testing

/// The handshake fields the gateway makes itself for a WebSocket over HTTP/2, whose upstream side
/// it opens as an HTTP/1.1 upgrade with its own key.
@Suite("WebSocket handshake fields")
struct WebSocketHandshakeUnitTests {
    @Test("the accept value for RFC 6455's own example key is the RFC's")
    func acceptForTheRFCExample() {
        #expect(WebSocketUpgrade.accept(for: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test("a made key is 16 random bytes in padded standard base64, new every time")
    func keysAreFresh() {
        let keys = (0..<50).map { _ in WebSocketUpgrade.makeKey() }
        #expect(keys.allSatisfy { $0.count == 24 && $0.hasSuffix("==") && !$0.contains("-") && !$0.contains("_") })
        #expect(Set(keys).count == keys.count)
    }
}
