import NIOCore
import NIOHTTP1
import PortcullisJOSE
import Prometheus

/// The request-head half of the proxy as one call, for the fuzz harness (`Sources/PortcullisFuzz`,
/// docs/fuzzing.md): request-target check → route match → header rewrite → the upstream head's
/// bytes, in the order `ProxyHandler.handleHead` runs them, without the I/O, the authentication
/// and the rate limits. `package` access keeps it out of the public API.
///
/// The head checks are `Admission.checkHead` itself (Host, Transfer-Encoding, underscores,
/// the path policy), so the harness exercises exactly what the request path runs.
package struct RequestHeadPath: Sendable {
    private let table: RouteTable

    /// Routes from a gateway config file's text (see docs/configuration.md).
    package init(configYAML: String) throws {
        let config = try GatewayConfig.parse(yaml: configYAML, file: "fuzz.yaml")
        table = try RouteTable(config: config, metrics: GatewayMetrics(registry: PrometheusCollectorRegistry()))
    }

    package enum Outcome {
        /// Answered by the gateway itself: 400 (request target), 404 or 405.
        case refused(status: Int)
        case forwarded(Forwarded)
    }

    /// A request the gateway would send upstream.
    package struct Forwarded {
        package let routeName: String
        package let pathPrefix: String
        package let stripPrefix: Bool
        /// The path the router matched (the target without its query).
        package let matchedPath: String
        /// Identity headers the route forwards from a verified token.
        package let identityHeaders: [IdentityHeader]
        package let method: HTTPMethod
        package let uri: String
        package let fields: [(name: String, value: String)]
        package let isChunked: Bool
        /// Whether the head tells the upstream `Connection: close` (written after `fields`).
        package let closesConnection: Bool
        /// The head exactly as `HTTP1Writer` writes it to the upstream connection.
        package let headBytes: [UInt8]
        private let writer: HTTP1Writer

        fileprivate init(route: CompiledRoute, matchedPath: Substring, head: UpstreamRequestHead) {
            routeName = route.config.name
            pathPrefix = route.config.pathPrefix
            stripPrefix = route.config.stripPrefix
            self.matchedPath = String(matchedPath)
            identityHeaders = route.headerPolicy.identityHeaders
            method = head.method
            uri = head.uri
            fields = head.fields
            isChunked = head.isChunked
            closesConnection = head.closesConnection
            var writer = HTTP1Writer()
            headBytes = Array(buffer: writer.request(head, allocator: ByteBufferAllocator()))
            self.writer = writer
        }

        /// The body parts and the end, framed as `UpstreamConnection.write` frames them.
        package func bodyBytes(_ parts: [ByteBuffer]) -> [UInt8] {
            let allocator = ByteBufferAllocator()
            var out = allocator.buffer(capacity: 64)
            for part in parts {
                if var prefix = writer.chunkPrefix(for: part, allocator: allocator) { out.writeBuffer(&prefix) }
                out.writeImmutableBuffer(part)
                if var suffix = writer.chunkSuffix(for: part, allocator: allocator) { out.writeBuffer(&suffix) }
            }
            if var end = writer.end(allocator: allocator) { out.writeBuffer(&end) }
            return Array(buffer: out)
        }
    }

    /// What the gateway does with a request head NIO's decoder produced, given the token that
    /// authenticated it (nil: an unauthenticated route or none at all).
    package func forward(_ head: HTTPRequestHead, identity: VerifiedToken?, clientAddress: String?, requestID: String) -> Outcome {
        let head = Self.trimmed(head)
        let facts = RequestHeadFacts(head.headers)
        guard case .success(let target) = Admission.checkHead(head, facts: facts, policy: table.request) else { return .refused(status: 400) }
        let path = target.path
        switch table.router.match(host: HostHeader.name(facts.host), path: path, method: head.method.rawValue) {
        case .notFound:
            return .refused(status: 404)
        case .methodNotAllowed:
            return .refused(status: 405)
        case .matched(let route):
            if route.config.stripPrefix, Admission.cutLeavesDotSegment(path, prefix: route.config.pathPrefix) { return .refused(status: 400) }
            if route.jwtAuth != nil, BearerExtractor.queryNamesAccessToken(head.uri) { return .refused(status: 400) }
            let client = HeaderRewriter.ClientInfo(address: clientAddress, isTLS: false)
            let upstream = HeaderRewriter.upstreamRequest(head, uri: target.uri, policy: route.headerPolicy, identity: identity, requestID: requestID,
                                                          client: client, hasAmbiguousNames: facts.hasAmbiguousNames)
            return .forwarded(Forwarded(route: route, matchedPath: path, head: upstream))
        }
    }

    /// `head` as `ProxyHandler` reads it: values without the spaces and tabs at their ends.
    private static func trimmed(_ head: HTTPRequestHead) -> HTTPRequestHead {
        guard RequestHeadFacts(head.headers).hasPaddedValues else { return head }
        var trimmed = head
        trimmed.headers = OptionalWhitespace.trimmed(head.headers)
        return trimmed
    }

    /// The path the router matches for `head` (the target after the path policy), nil when the
    /// head checks refuse it.
    package func routedPath(_ head: HTTPRequestHead) -> String? {
        let head = Self.trimmed(head)
        guard case .success(let target) = Admission.checkHead(head, facts: RequestHeadFacts(head.headers), policy: table.request) else { return nil }
        return String(target.path)
    }

    /// A claim as the gateway writes it into an identity header.
    package static func claimValue(_ claim: String, of token: VerifiedToken) -> String? {
        HeaderRewriter.claimValue(claim, of: token)
    }

    /// The fields the gateway never forwards from a client as they are.
    package static let hopByHop = HeaderRewriter.hopByHop
}
