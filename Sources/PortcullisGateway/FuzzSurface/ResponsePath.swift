import NIOCore
import NIOHTTP1

/// The response half of the proxy for the fuzz harness (`Sources/PortcullisFuzz`,
/// docs/fuzzing.md): `UpstreamResponseParser` over an upstream's bytes, and the bytes the client
/// would then receive (`HeaderRewriter.clientResponse`, `HTTP1Writer`, `ResponseOutput`).
/// Events are plain values so the harness can compare them.
package struct ResponsePath {
    package struct Field: Equatable {
        package let name: [UInt8]
        package let value: [UInt8]
    }

    package struct Head: Equatable {
        package let status: Int
        package let minorVersion: Int
        /// Every field but `Content-Length`, in order.
        package let fields: [Field]
        /// The length passed on to the client (nil when the body was not framed by one).
        package let contentLength: Int?
    }

    package enum Event: Equatable {
        case head(Head)
        case body([UInt8])
        case end(reusable: Bool)
    }

    private var parser = UpstreamResponseParser()
    private var lastHead: UpstreamResponseHead?

    /// Starts reading the response to a request with `method`.
    package init(method: HTTPMethod) {
        parser.expectResponse(to: method)
    }

    package mutating func append(_ bytes: ByteBuffer) {
        parser.append(bytes)
    }

    /// The next event, nil when more bytes are needed; throws on a malformed response.
    package mutating func next() throws -> Event? {
        guard let event = try parser.next() else { return nil }
        return convert(event)
    }

    /// The upstream closed the connection.
    package mutating func inputClosed() throws -> Event? {
        guard let event = try parser.inputClosed() else { return nil }
        return convert(event)
    }

    private mutating func convert(_ event: UpstreamResponseParser.Event) -> Event {
        switch event {
        case .head(let head):
            lastHead = head
            let fields = head.withBytes { bytes in
                head.fields.map { Field(name: Array(bytes[$0.name]), value: Array(bytes[$0.value])) }
            }
            return .head(Head(status: Int(head.status.code), minorVersion: head.version.minor, fields: fields, contentLength: head.contentLength))
        case .body(let body):
            return .body(Array(buffer: body))
        case .end(let reusable):
            return .end(reusable: reusable)
        }
    }

    /// A route with no header rules, as the client side of a response sees it.
    private static let policy: HeaderRewriter.Policy = {
        do {
            let config = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\nroutes:\n  - {name: r, path_prefix: /, upstream: {targets: [127.0.0.1:1]}}\n",
                                                 file: "fuzz.yaml")
            return HeaderRewriter.Policy(route: config.routes[0], identityHeaders: config.identityHeaders)
        } catch {
            fatalError("fuzz policy: \(error)")
        }
    }()

    /// The bytes an HTTP/1.1 client receives for the last head read and `body`, written as
    /// `ProxyHandler` writes a response (head rewritten, `X-Request-Id: requestID` added).
    package func clientResponse(body parts: [ByteBuffer], requestID: String, isHEAD: Bool) -> [UInt8] {
        guard let lastHead else { return [] }
        let allocator = ByteBufferAllocator()
        let head = HeaderRewriter.clientResponse(lastHead, policy: Self.policy, requestID: requestID, extra: nil, version: .http1_1)
        let framing = HTTP1Writer.responseFraming(head, bodyless: isHEAD)
        var output = ResponseOutput()
        output.head(head, framing: framing, bodyLength: head.contentLength, allocator: allocator)
        var bytes: [UInt8] = []
        for part in parts {
            output.body(part, allocator: allocator) { buffer, _ in bytes += Array(buffer: buffer) }
        }
        if let last = output.end(allocator: allocator) { bytes += Array(buffer: last) }
        return bytes
    }
}
