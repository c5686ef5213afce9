@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import PortcullisConfig
import Testing

/// The pure parts of the HTTP/2 path: telling the protocol from the first bytes, the HTTP/2 rules
/// on a request's header block, and the gRPC shape of the gateway's own answers.
@Suite("HTTP/2 detection and request-head rules")
struct HTTP2UnitTests {
    /// Records what the detector decided and the bytes that reached the handler after it.
    final class Sink: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var received = ByteBuffer()
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            received.writeBuffer(&bytes)
        }
    }

    private func detect(_ chunks: [String]) throws -> (decision: HTTP2PrefaceDetector.Spoken?, received: String, detectorLeft: Bool) {
        let channel = EmbeddedChannel()
        var decision: HTTP2PrefaceDetector.Spoken?
        let sink = Sink()
        let detector = HTTP2PrefaceDetector { spoken, context in
            decision = spoken
            try context.pipeline.syncOperations.addHandler(sink)
        }
        try channel.pipeline.syncOperations.addHandler(detector)
        for chunk in chunks { try channel.writeInbound(ByteBuffer(string: chunk)) }
        let left = (try? channel.pipeline.syncOperations.context(handlerType: HTTP2PrefaceDetector.self)) != nil
        _ = try? channel.finish()
        return (decision, String(buffer: sink.received), left)
    }

    @Test("the HTTP/2 preface split over reads is detected, and every byte is passed on once")
    func prefaceSplit() throws {
        let result = try detect(["PRI * HTT", "P/2.0\r\n\r\nSM\r", "\n\r\n", "\u{0}\u{0}"])
        #expect(result.decision == .http2)
        #expect(result.received == "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\u{0}\u{0}")
        #expect(!result.detectorLeft)
    }

    @Test("an HTTP/1.1 request is decided at its first byte that differs from the preface")
    func http1AtFirstDifference() throws {
        #expect(try detect(["G"]).decision == .http1)
        #expect(try detect(["P"]).decision == nil)
        let post = try detect(["P", "OST / HTTP/1.1\r\n"])
        #expect(post.decision == .http1)
        #expect(post.received == "POST / HTTP/1.1\r\n")
        // A method that shares the preface's first letters is still HTTP/1.1.
        #expect(try detect(["PRI / HTTP/1.1\r\n"]).decision == .http1)
    }

    @Test("an incomplete preface decides nothing and passes nothing on")
    func incompletePreface() throws {
        let result = try detect(["PRI * HTTP/2.0\r\n"])
        #expect(result.decision == nil)
        #expect(result.received.isEmpty)
        #expect(result.detectorLeft)
    }

    @Test(":authority and Host must agree; case does not matter")
    func authorityAgreement() {
        let base: [(String, String)] = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a.test")]
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(base)) == .unchanged)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(base + [("host", "A.Test")])) == .unchanged)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(base + [("host", "b.test")])) == .malformed)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(base + [("host", "a.test"), ("host", "b.test")])) == .malformed)
    }

    static let head: [(String, String)] = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a.test")]

    static func rewritten(_ outcome: HTTP2HeaderBlocks.Outcome) -> HPACKHeaders? {
        if case .rewritten(let headers) = outcome { return headers }
        return nil
    }

    @Test("several cookie fields are joined into one, in order, after the other fields")
    func cookiesJoined() {
        let headers = HPACKHeaders(Self.head + [("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")])
        guard let rewritten = Self.rewritten(HTTP2HeaderBlocks.normalize(headers)) else {
            Issue.record("cookies were not joined")
            return
        }
        #expect(rewritten.map(\.name) == [":method", ":scheme", ":path", ":authority", "x", "cookie"])
        #expect(rewritten.first(name: "cookie") == "a=1; b=2")
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + [("cookie", "a=1")])) == .unchanged)
    }

    @Test("a GET, HEAD, DELETE or TRACE whose HEADERS do not end the stream and that declares no length gets transfer-encoding: chunked; with END_STREAM, a content-length, another method or an extended CONNECT it does not")
    func unframedBodiesAreChunked() {
        for method in ["GET", "HEAD", "DELETE", "TRACE"] {
            let headers = HPACKHeaders([(":method", method), (":scheme", "http"), (":path", "/"), (":authority", "a.test")])
            #expect(Self.rewritten(HTTP2HeaderBlocks.normalize(headers, endStream: false))?.first(name: "transfer-encoding") == "chunked", "\(method)")
            #expect(HTTP2HeaderBlocks.normalize(headers, endStream: true) == .unchanged, "\(method)")
        }
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + [("content-length", "5")]), endStream: false) == .unchanged)
        // NIO's codec frames the other methods' bodies itself.
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]), endStream: false) == .unchanged)
        let connect = HPACKHeaders([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
        #expect(HTTP2HeaderBlocks.normalize(connect, endStream: false) == .unchanged)
    }

    @Test("content-length must be one decimal number: equal repeats become one field; a sign, a difference or anything else is malformed")
    func contentLengthCanonical() {
        func length(_ values: String...) -> HTTP2HeaderBlocks.Outcome {
            HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + values.map { ("content-length", $0) }), endStream: false)
        }
        #expect(length("5") == .unchanged)
        for same in [["5, 5"], ["5", "5"], ["005"], ["5 ,5"]] {
            let outcome = HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + same.map { ("content-length", $0) }), endStream: false)
            #expect(Self.rewritten(outcome)?.values(forHeader: "content-length").map { $0 } == ["5"], "\(same)")
        }
        for bad in ["+5", "-1", "5, 6", "0x5", "", "5,", "18446744073709551616", "5 5"] {
            #expect(length(bad) == .malformed, "\(bad)")
        }
        #expect(length("5", "6") == .malformed)
    }

    @Test("field values with control characters or leading or trailing whitespace, a :method that is not a token or has a lower-case letter, a missing :scheme or :path, a :path with bytes other than visible ASCII, and neither :authority nor Host are malformed")
    func malformedHeads() {
        for value in ["a\u{01}b", "a\u{7F}", "a\u{0B}b", " padded", "padded\t", "\tx"] {
            #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + [("x-a", value)])) == .malformed, "\(value.debugDescription)")
        }
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders(Self.head + [("x-a", "in\tside ok é")])) == .unchanged)
        for path in ["/a?q=é", "/a b", "/a?x=1\t"] {
            #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "a")])) == .malformed,
                    "\(path.debugDescription)")
        }
        for method in ["G/E@T", "", "GE T", "delete", "Delete", "get", "m-search"] {
            #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", method), (":scheme", "http"), (":path", "/"), (":authority", "a")])) == .malformed,
                    "\(method)")
        }
        for method in ["PROPFIND", "M-SEARCH", "PURGE", "X_1"] {
            #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", method), (":scheme", "http"), (":path", "/"), (":authority", "a")])) == .unchanged,
                    "\(method)")
        }
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "GET"), (":path", "/"), (":authority", "a")])) == .malformed)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":authority", "a")])) == .malformed)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", "/")])) == .malformed)
    }

    @Test("a request with Host and no :authority gets :authority from Host (RFC 9113 §8.3.1); a CONNECT without :protocol goes on in authority form, for admission to refuse")
    func authorityFromHost() {
        let hostOnly = HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h.test")])
        #expect(Self.rewritten(HTTP2HeaderBlocks.normalize(hostOnly))?.first(name: ":authority") == "h.test")
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "a"), ("host", "b")])) == .malformed)
        let tunnel = Self.rewritten(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "CONNECT"), (":authority", "a:443")])))
        #expect(tunnel?.first(name: ":method") == "CONNECT" && tunnel?.first(name: ":path") == "a:443" && tunnel?.first(name: ":scheme") != nil)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "CONNECT")])) == .malformed)
        #expect(HTTP2HeaderBlocks.normalize(HPACKHeaders([(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")])) == .malformed)
    }

    @Test("a response's x-request-id leaves as a literal HPACK does not index; its other fields, a block without one and DATA pass unchanged")
    func requestIDNotIndexed() throws {
        let channel = EmbeddedChannel(handler: HTTP2HeaderBlocks())
        let response = HPACKHeaders([(":status", "200"), ("content-type", "text/plain"), ("x-request-id", "r-1"), ("server", "s")])
        try channel.writeOutbound(HTTP2Frame.FramePayload.headers(.init(headers: response)))
        guard case .headers(let sent) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no HEADERS written")
            return
        }
        #expect(sent.headers.map(\.name) == [":status", "content-type", "server", "x-request-id"])
        #expect(sent.headers.map(\.indexable) == [.indexable, .indexable, .indexable, .nonIndexable])
        #expect(sent.headers.first(name: "x-request-id") == "r-1")
        let trailers = HPACKHeaders([("grpc-status", "0")])
        try channel.writeOutbound(HTTP2Frame.FramePayload.headers(.init(headers: trailers, endStream: true)))
        guard case .headers(let passed) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no trailers written")
            return
        }
        #expect(passed.headers == trailers && passed.endStream)
        try channel.writeOutbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "x")))))
        guard case .data = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("DATA not passed on")
            return
        }
        #expect(try channel.finish().isClean)
    }

    @Test("an early response's end is RST_STREAM NO_ERROR, written and flushed when asked; other events and frames pass on")
    func earlyResponseReset() throws {
        /// Records the outbound events that reach the channel's head.
        final class EventSink: ChannelOutboundHandler {
            typealias OutboundIn = NIOAny
            var events: [String] = []
            func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
                events.append("\(type(of: event))")
                promise?.succeed()
            }
        }
        let sink = EventSink()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([sink, HTTP2EarlyResponseReset()])
        try channel.writeOutbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "x")))))
        guard case .data = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("DATA not passed on")
            return
        }
        channel.pipeline.triggerUserOutboundEvent("another", promise: nil)
        #expect(sink.events == ["String"])
        #expect(try channel.readOutbound(as: HTTP2Frame.FramePayload.self) == nil)
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.pipeline.triggerUserOutboundEvent(HTTP2EarlyResponseReset.request, promise: written)
        guard case .rstStream(let code) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no RST_STREAM written")
            return
        }
        #expect(code == .noError)
        #expect(sink.events == ["String"], "the request is not passed on")
        try written.futureResult.wait()
        #expect(try channel.finish().isClean)
    }

    @Test("a header block that might not fit one HTTP/2 frame once Huffman-coded is measured: 7 000 backslashes do not fit, 7 000 letters do, an ordinary request is never measured")
    func headerBlockSize() {
        let ordinary = HPACKHeaders([(":method", "POST"), (":path", "/pkg.Echo/Unary"), ("authorization", "Bearer " + String(repeating: "x", count: 1200))])
        #expect(HTTP2HeaderBlockSize.fitsOneFrame(ordinary))
        let backslashes = HPACKHeaders([(":method", "GET"), ("x-big", String(repeating: "\\", count: 7000))])
        #expect(HTTP2HeaderBlockSize.encodedSize(backslashes) > HTTP2HeaderBlockSize.frameLimit)
        #expect(!HTTP2HeaderBlockSize.fitsOneFrame(backslashes))
        let letters = HPACKHeaders([(":method", "GET"), ("x-big", String(repeating: "a", count: 7000))])
        #expect(HTTP2HeaderBlockSize.encodedSize(letters) < 5000)
        #expect(HTTP2HeaderBlockSize.fitsOneFrame(letters))
        // U+FFFD (what a byte that is not UTF-8 arrives as) is three bytes of long codes.
        let replaced = HPACKHeaders([("x-big", String(repeating: "\u{FFFD}", count: 2000))])
        #expect(!HTTP2HeaderBlockSize.fitsOneFrame(replaced))
    }

    @Test("the gateway's refusals map to the gRPC statuses clients act on")
    func grpcStatusMapping() {
        #expect(GRPCStatus.code(for: .unauthorized) == 16)
        #expect(GRPCStatus.code(for: .forbidden) == 7)
        #expect(GRPCStatus.code(for: .tooManyRequests) == 8)
        #expect(GRPCStatus.code(for: .requestHeaderFieldsTooLarge) == 8)
        #expect(GRPCStatus.code(for: .badGateway) == 14)
        #expect(GRPCStatus.code(for: .serviceUnavailable) == 14)
        #expect(GRPCStatus.code(for: .gatewayTimeout) == 4)
        #expect(GRPCStatus.isGRPC(contentType: "application/grpc"))
        #expect(GRPCStatus.isGRPC(contentType: "application/grpc+proto"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/grpc-web"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/json"))
        #expect(GRPCStatus.encodedMessage("100% ok\n é") == "100%25 ok%0A %C3%A9")
    }

    @Test("the gateway's own answer to a gRPC call is a 200 with application/grpc, no body, and its status and message in trailers; to any other request (and a gRPC call's 204) JSON with its length, no body to a HEAD; each with its request id and no-store")
    func gatewayAnswerShapes() throws {
        let allocator = ByteBufferAllocator()
        let refusal = ErrorResponse(AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: "token revoked", reason: "revoked",
                                                scope: nil), realm: "api")
        let grpc = HTTP2GatewayAnswer(refusal, requestID: "r-1", isGRPC: true, isHEAD: false, allocator: allocator)
        #expect(grpc.head.status == .ok && grpc.body == nil && grpc.bodyBytes == 0)
        #expect(grpc.head.headers["content-type"] == ["application/grpc"])
        #expect(grpc.head.headers["x-request-id"] == ["r-1"] && grpc.head.headers["cache-control"] == ["no-store"])
        #expect(grpc.head.headers["www-authenticate"].count == 1)
        #expect(grpc.trailers?["grpc-status"] == ["16"])
        #expect(grpc.trailers?["grpc-message"] == ["invalid_token: token revoked"])

        let json = HTTP2GatewayAnswer(refusal, requestID: "r-2", isGRPC: false, isHEAD: false, allocator: allocator)
        #expect(json.head.status == .unauthorized && json.trailers == nil)
        #expect(json.head.headers["content-type"] == ["application/json"])
        let text = String(buffer: try #require(json.body))
        #expect(json.head.headers["content-length"] == [String(text.utf8.count)] && json.bodyBytes == text.utf8.count)
        #expect(text.contains("\"request_id\":\"r-2\""))

        let head = HTTP2GatewayAnswer(refusal, requestID: "r-3", isGRPC: false, isHEAD: true, allocator: allocator)
        #expect(head.body == nil && head.bodyBytes == 0 && head.head.headers["content-length"] == json.head.headers["content-length"])

        let preflight = ErrorResponse(status: .noContent, error: "preflight", description: "")
        let noContent = HTTP2GatewayAnswer(preflight, requestID: "r-4", isGRPC: true, isHEAD: false, allocator: allocator)
        #expect(noContent.head.status == .noContent && noContent.body == nil && noContent.trailers == nil)
        #expect(noContent.head.headers["content-type"].isEmpty && noContent.head.headers["content-length"].isEmpty)
    }
}

/// The HTTP/2 upstream path's header rules (gRPC routes): what reaches an HTTP/2 upstream and
/// what of its head and trailers reaches the client.
@Suite("HTTP/2 upstream header rules")
struct HTTP2UpstreamHeaderTests {
    func policy(_ extra: String = "") throws -> HeaderRewriter.Policy {
        let route = try GatewayConfig.parse(yaml: """
        listen: 127.0.0.1:1
        routes:
          - name: g
            path_prefix: /pkg
            upstream: {targets: [127.0.0.1:1], protocol: h2c}
        \(extra)
        """, file: "t.yaml").routes[0]
        return HeaderRewriter.Policy(route: route, identityHeaders: IdentityHeader.defaults)
    }

    /// The build before loaded it, and an HTTP/1.1 upgrade on such a route went to the HTTP/2
    /// upstream as HTTP/1.1, past the 505 such routes give HTTP/1.1 clients.
    @Test("websocket on a route whose upstream speaks HTTP/2 is a config error naming the file, line and key")
    func webSocketNeedsHTTP1Upstream() {
        let yaml = "listen: 127.0.0.1:1\nroutes:\n  - name: g\n    path_prefix: /\n    upstream: {targets: ['127.0.0.1:1'], protocol: h2c}\n    websocket: true\n"
        do {
            _ = try GatewayConfig.parse(yaml: yaml, file: "gw.yaml")
            Issue.record("accepted websocket on an h2c route")
        } catch let error as ConfigError {
            #expect(error.file == "gw.yaml" && error.line == 6 && error.keyPath.hasSuffix("websocket"), "\(error)")
            #expect(error.message.contains("HTTP/1.1 upstream"), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("an HTTP/2 upstream's request block: pseudo-fields first (:authority from Host), lower-case names, no connection-specific fields, te: trailers only when the client sent it, and the request id not indexed")
    func upstreamRequest() throws {
        let policy = try policy()
        let head = HTTPRequestHead(version: .http2, method: .POST, uri: "/pkg.S/M", headers: HTTPHeaders([
            ("host", "g.test"), ("te", "trailers"), ("transfer-encoding", "chunked"), ("content-type", "application/grpc"),
        ]))
        var rewritten = HeaderRewriter.upstreamRequest(head, uri: head.uri, policy: policy, identity: nil, requestID: "rid",
                                                       client: .init(address: "192.0.2.7", isTLS: false))
        rewritten.fields.append(("X-Upper", "1"))
        rewritten.fields.append(("Keep-Alive", "5"))
        let block = HeaderRewriter.http2UpstreamRequest(rewritten, clientHead: head, scheme: "https")
        let names = block.map(\.name)
        #expect(Array(names.prefix(4)) == [":method", ":scheme", ":authority", ":path"])
        #expect(block[":method"] == ["POST"] && block[":scheme"] == ["https"] && block[":authority"] == ["g.test"] && block[":path"] == ["/pkg.S/M"])
        #expect(names.allSatisfy { $0 == $0.lowercased() }, "\(names)")
        #expect(block["x-upper"] == ["1"])
        #expect(block["te"] == ["trailers"])
        for name in ["transfer-encoding", "keep-alive", "host", "connection"] { #expect(block[name].isEmpty, "\(name)") }
        #expect(block["content-type"] == ["application/grpc"])
        let requestID = block.first { $0.name == "x-request-id" }
        #expect(requestID?.value == "rid" && requestID?.indexable == .nonIndexable)
        #expect(block.first { $0.name == "content-type" }?.indexable == .indexable)
        var withoutTE = head
        withoutTE.headers.remove(name: "te")
        let plain = HeaderRewriter.upstreamRequest(withoutTE, uri: head.uri, policy: policy, identity: nil, requestID: "rid",
                                                   client: .init(address: "192.0.2.7", isTLS: false))
        #expect(HeaderRewriter.http2UpstreamRequest(plain, clientHead: withoutTE, scheme: "http")["te"].isEmpty)
    }

    @Test("an HTTP/2 upstream's :status must be three digits from 100", arguments: [
        ("200", 200), ("404", 404), ("100", 100), ("099", nil), ("20", nil), ("2000", nil), ("20x", nil), ("+20", nil), ("", nil),
    ] as [(String, Int?)])
    func upstreamStatus(_ value: String, _ expected: Int?) {
        #expect(HTTP2UpstreamStreamHandler.status(HPACKHeaders([(":status", value)]))?.code == expected.map(UInt.init))
        #expect(HTTP2UpstreamStreamHandler.status(HPACKHeaders([("content-type", "text/plain")])) == nil)
    }

    @Test("an HTTP/2 upstream's head loses hop-by-hop, Connection-listed and removed fields and gains the gateway's; trailers pass")
    func clientFields() throws {
        let policy = try policy("    response_headers: {set: {X-Frame-Options: DENY}, remove: [Server]}")
        let upstream = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc"), ("connection", "x-hop"), ("x-hop", "1"),
                                     ("keep-alive", "5"), ("server", "s"), ("x-frame-options", "ALLOW"), ("x-request-id", "forged"),
                                     ("grpc-encoding", "gzip")])
        let head = HeaderRewriter.http2ClientFields(upstream, policy: policy, requestID: "rid", extra: HTTPHeaders([("RateLimit", "r")]))
        #expect(head["content-type"] == ["application/grpc"])
        #expect(head["grpc-encoding"] == ["gzip"])
        for name in ["connection", "x-hop", "keep-alive", "server", ":status"] { #expect(head[name].isEmpty, "\(name)") }
        #expect(head["x-frame-options"] == ["DENY"])
        #expect(head["x-request-id"] == ["rid"])
        #expect(head["ratelimit"] == ["r"])
        let trailers = HeaderRewriter.http2ClientFields(HPACKHeaders([("grpc-status", "0"), ("grpc-message", "ok"), ("connection", "close")]),
                                                        policy: policy, requestID: nil, extra: nil)
        #expect(trailers["grpc-status"] == ["0"])
        #expect(trailers["grpc-message"] == ["ok"])
        #expect(trailers["connection"].isEmpty)
        #expect(trailers["x-request-id"].isEmpty)
    }

    @Test("on a CORS route every Access-Control-* field of an HTTP/2 upstream's head is removed, named in the gateway's list or not; on another route they pass")
    func upstreamAccessControlFields() throws {
        let upstream = HPACKHeaders([(":status", "200"), ("access-control-allow-origin", "*"), ("access-control-allow-private-network", "true"),
                                     ("access-control-anything", "x"), ("content-type", "text/plain")])
        let cors = HeaderRewriter.http2ClientFields(upstream, policy: try policy("    cors: {allowed_origins: ['https://app.example']}"),
                                                    requestID: "rid", extra: nil)
        #expect(cors.filter { $0.name.hasPrefix("access-control-") }.isEmpty, "\(cors)")
        #expect(cors["content-type"] == ["text/plain"])
        let plain = HeaderRewriter.http2ClientFields(upstream, policy: try policy(), requestID: "rid", extra: nil)
        #expect(plain["access-control-allow-private-network"] == ["true"])
        #expect(plain["access-control-allow-origin"] == ["*"])
    }
}
