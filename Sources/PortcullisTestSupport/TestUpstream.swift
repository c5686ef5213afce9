import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A real HTTP/1.1 upstream on a free loopback port, for gateway tests. It echoes what it got as
/// JSON and has a few special paths:
/// - `/status/NNN` answers with that status;
/// - `/bytes/N` sends N bytes (chunked);
/// - `/delay/MS` answers after MS milliseconds (also deeper in a path: `/prefix/delay/MS/…`);
/// - `/drip/MS` sends a head at once and then a line (`tick N`) every MS milliseconds, chunked,
///   until the connection closes: a response that never ends;
/// - `/close` closes the connection without answering;
/// - `/raw/NAME` writes one of `rawResponses` byte for byte (pausing at `rawPause` or `rawLongPause`), then closes (NIO's server pipeline
///   would hold the next request back, never having seen this response end);
/// - any request body is counted, not stored, and reported as `body_bytes`.
public final class TestUpstream: Sendable {
    /// In a raw response: the bytes before it are written, the rest 100 ms later.
    public static let rawPause = "\u{1}pause\u{1}"
    /// As `rawPause`, 2 s: longer than the tests' `response_header_timeout`.
    public static let rawLongPause = "\u{1}long-pause\u{1}"

    /// The stray "body" of `head-then-response`: a response that must never reach anyone.
    public static let strayResponse = "HTTP/1.1 200 OK\r\nContent-Length: 21\r\nX-Stray: 1\r\n\r\nnot your account page"

    /// Responses written as raw bytes, bypassing NIO's encoder: framings and faults it would not produce.
    public static let rawResponses: [String: String] = [
        "bad-length": "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "until-close": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close",
        "trailers": "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        // Interim heads without end (here 1 000), then an answer that must not be passed on.
        "interim-flood": String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 1000) + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate",
        // 1-byte chunks each carrying 4 000 bytes of chunk extensions.
        "extension-padded": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(repeating: "1;x=" + String(repeating: "y", count: 4000) + "\r\nz\r\n", count: 20) + "0\r\n\r\n",
        // A body in a transfer coding the gateway does not decode.
        "gzip-coded": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        // A chunk size past any length, in the same write as a valid head.
        "huge-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        // A head with a 7 000-byte field of backslashes (19 bits each in HPACK's Huffman code).
        "huge-head": "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "\\", count: 7000) + "\r\nContent-Length: 2\r\n\r\nok",
        // A valid head and chunk, then (after a pause, so the gateway has passed them on) a
        // malformed chunk size.
        "late-bad-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" + rawPause + "zz\r\n",
        // An answer to HEAD followed (after the pause) by the body its length announced — here
        // a whole response, as an upstream that reflects its input could be made to send.
        "head-then-response": "HTTP/1.1 200 OK\r\nContent-Length: \(strayResponse.utf8.count)\r\n\r\n" + rawPause + strayResponse,
        // A Connection field listing 15 000 distinct names (60 KB, within the gateway's head
        // limit), one of them a field the response carries (hop-by-hop, so not passed on).
        "connection-list": "HTTP/1.1 200 OK\r\nConnection: " + TestUpstream.manyNames(15_000).joined(separator: ",")
            + "\r\nAaa: hop\r\nX-Kept: end\r\nContent-Length: 2\r\n\r\nok",
        // A head whose lines end in bare LFs, the connection held open after it.
        "bare-lf": "HTTP/1.1 200 OK\nContent-Length: 2\n\nok" + rawLongPause,
        // The same with the status line ended in CRLF: a later line is the bare one.
        "bare-lf-field": "HTTP/1.1 200 OK\r\nContent-Length: 2\nX-A: 1\n\nok" + rawLongPause,
        // An upstream whose CORS rules let any site read credentialed responses.
        "cors-wide-open": "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://evil.example\r\nAccess-Control-Allow-Credentials: true\r\nAccess-Control-Expose-Headers: *\r\nAccess-Control-Allow-Private-Network: true\r\nACCESS-CONTROL-MADE-UP: x\r\nContent-Length: 2\r\n\r\nok",
    ]

    /// `count` distinct three-letter names, `aaa` first (at most 17 576).
    public static func manyNames(_ count: Int) -> [String] {
        let letters: [Character] = Array("abcdefghijklmnopqrstuvwxyz")
        var names: [String] = []
        for index in 0..<min(count, 17_576) {
            let first = letters[index / 676], second = letters[(index / 26) % 26], third = letters[index % 26]
            names.append(String([first, second, third]))
        }
        return names
    }

    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let stats: Stats

    final class Stats: Sendable {
        let connections = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let open = Atomic<Int>(0)
    }

    /// Connections accepted so far (keep-alive reuse shows as fewer connections than requests).
    public var connectionCount: Int { stats.connections.load(ordering: .relaxed) }
    public var requestCount: Int { stats.requests.load(ordering: .relaxed) }
    /// Connections open now (a gateway that gave up on a request must close its connection).
    public var openConnections: Int { stats.open.load(ordering: .relaxed) }
    public let host: String
    public var address: String { "\(host):\(port)" }

    /// - Parameter host: the address to listen on (a network-namespace test needs a non-loopback one).
    public static func start(host: String = "127.0.0.1", port: Int = 0) async throws -> TestUpstream {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let stats = Stats()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                stats.connections.wrappingAdd(1, ordering: .relaxed)
                stats.open.wrappingAdd(1, ordering: .relaxed)
                channel.closeFuture.whenComplete { _ in stats.open.wrappingSubtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(EchoHandler(stats: stats))
                }
            }
            .bind(host: host, port: port).get()
        return TestUpstream(host: host, port: channel.localAddress!.port!, group: group, channel: channel, stats: stats)
    }

    private init(host: String, port: Int, group: MultiThreadedEventLoopGroup, channel: any Channel, stats: Stats) {
        self.host = host
        self.port = port
        self.group = group
        self.channel = channel
        self.stats = stats
    }

    public func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let stats: TestUpstream.Stats
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var bodyParts = 0
    private var bodyPreview: [UInt8] = []

    init(stats: TestUpstream.Stats) {
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
            bodyParts = 0
            bodyPreview = []
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            bodyParts += 1
            if bodyPreview.count < 4096 {
                bodyPreview += buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, 4096 - bodyPreview.count)) ?? []
            }
        case .end:
            guard let head else { return }
            stats.requests.wrappingAdd(1, ordering: .relaxed)
            respond(context: context, head: head)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = String(head.uri.prefix { $0 != "?" })
        let parts = path.split(separator: "/")
        if path == "/close" {
            context.close(promise: nil)
            return
        }
        if parts.count == 2, parts[0] == "raw", let raw = TestUpstream.rawResponses[String(parts[1])],
           let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) {
            // Written from the encoder's context, so the bytes go out as they are.
            let long = raw.contains(TestUpstream.rawLongPause)
            let pieces = raw.replacingOccurrences(of: TestUpstream.rawLongPause, with: TestUpstream.rawPause).components(separatedBy: TestUpstream.rawPause)
            let first = encoder.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: pieces[0])))
            guard pieces.count > 1 else {
                first.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            let rest = pieces.dropFirst().joined()
            let loopBound = NIOLoopBound((encoder, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(long ? 2000 : 100)) {
                let (encoder, context) = loopBound.value
                encoder.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: rest))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
            return
        }
        if let at = parts.firstIndex(of: "delay"), at + 1 < parts.count, let ms = Int64(parts[at + 1]) {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(ms)) {
                let (handler, context) = loopBound.value
                handler.sendEcho(context: context, head: head, status: .ok)
            }
            return
        }
        if parts.count == 2, parts[0] == "drip", let ms = Int64(parts[1]) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let ticks = NIOLoopBoundBox(0, eventLoop: context.eventLoop)
            let task = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(ms), delay: .milliseconds(ms)) { _ in
                let (handler, context) = loopBound.value
                ticks.value += 1
                let line = context.channel.allocator.buffer(string: "tick \(ticks.value)\n")
                context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(line))), promise: nil)
            }
            context.channel.closeFuture.whenComplete { _ in task.cancel() }
            return
        }
        if parts.count == 2, parts[0] == "tiny", let count = Int(parts[1]) {
            // `count` bodies of one byte each: chunks of one byte on the wire.
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/octet-stream")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            let one = context.channel.allocator.buffer(string: "x")
            for _ in 0..<count { context.write(wrapOutboundOut(.body(.byteBuffer(one))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if parts.count == 2, parts[0] == "bytes", let count = Int(parts[1]) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/octet-stream")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            var remaining = count
            let chunk = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
            while remaining > 0 {
                let size = min(remaining, chunk.readableBytes)
                context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: 0, length: size)!))), promise: nil)
                remaining -= size
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        var status = HTTPResponseStatus.ok
        if parts.count == 2, parts[0] == "status", let code = Int(parts[1]) {
            status = HTTPResponseStatus(statusCode: code)
        }
        sendEcho(context: context, head: head, status: status)
    }

    private func sendEcho(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus) {
        var headerObject: [String: [String]] = [:]
        for (name, value) in head.headers {
            headerObject[name.lowercased(), default: []].append(value)
        }
        let object: [String: Any] = [
            "method": head.method.rawValue,
            "uri": head.uri,
            "version": "\(head.version.major).\(head.version.minor)",
            "headers": headerObject,
            "body_bytes": bodyBytes,
            "body_parts": bodyParts,
            "body_preview": String(decoding: bodyPreview, as: UTF8.self),
        ]
        let json = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(json.count))
        headers.add(name: "X-Upstream", value: "test")
        headers.add(name: "Connection", value: head.isKeepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: json)))), promise: nil)
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
