import NIOCore
import NIOEmbedded
import NIOHTTP1
import PortcullisGateway

/// What one fuzz input is run through on the response side: the bytes an upstream sends, read by
/// `UpstreamResponseParser` (through `ResponsePath`), as the answer to a GET. Besides "no crash":
/// - split: the same bytes fed in pieces (cut at points derived from the input) give the same
///   head, body and end as fed whole;
/// - oracle: where `ResponseOracle` can decide, the parser agrees with it on the head, the body,
///   where the response ends, whether the connection may be reused, and on refusing;
/// - client side: a response the parser read, rewritten and written as the client receives it,
///   parses with NIO's (llhttp) response decoder to the same status, fields and body.
/// In the `chunked` target the input is a chunked body behind a fixed head, so mutations spend
/// themselves on chunk sizes, extensions, data and trailers.
enum ResponseHarness {
    static let chunkedHead = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: a\r\n\r\n".utf8)

    static func run(_ input: [UInt8], chunkedBodyOnly: Bool) {
        let bytes = chunkedBodyOnly ? chunkedHead + input : input
        let whole = read(bytes, cuts: [])
        let split = read(bytes, cuts: cutPoints(bytes))
        guard whole == split else {
            fatalError("fed whole and fed in pieces, the parser differs:\n whole: \(whole)\n split: \(split)")
        }

        switch ResponseOracle.read(bytes) {
        case .unsure:
            break
        case .invalid:
            guard whole.failed else { fatalError("the parser accepted a response the oracle refuses: \(whole)") }
        case .message(let expected):
            guard !whole.failed, let head = whole.head, whole.reusable != nil else {
                fatalError("the parser refused a response the oracle reads as \(expected): \(whole)")
            }
            let got = ResponseOracle.Message(status: head.status, minorVersion: head.minorVersion, fields: head.fields.map { (name: $0.name, value: $0.value) },
                                             contentLength: head.contentLength, body: whole.body, reusable: whole.reusable!)
            guard got == expected else { fatalError("parser and oracle differ:\n parser: \(got)\n oracle: \(expected)") }
        }

        if !whole.failed, let head = whole.head {
            checkClientSide(bytes, head: head, body: whole.body)
        }
    }

    /// What the parser made of a response, with the body parts joined.
    struct Reading: Equatable, CustomStringConvertible {
        var head: ResponsePath.Head?
        var body: [UInt8] = []
        var reusable: Bool?
        var failed = false

        var description: String {
            "head \(head.map { "\($0.status) fields \($0.fields.count) length \($0.contentLength.map(String.init) ?? "-")" } ?? "-"), "
                + "body \(body.count) bytes, end \(reusable.map { "reusable \($0)" } ?? "-"), failed \(failed)"
        }
    }

    static func read(_ bytes: [UInt8], cuts: [Int]) -> Reading {
        var path = ResponsePath(method: .GET)
        var reading = Reading()
        func take(_ event: ResponsePath.Event) {
            switch event {
            case .head(let head):
                guard reading.head == nil else { fatalError("a second head in one response") }
                reading.head = head
            case .body(let part):
                guard reading.head != nil, reading.reusable == nil else { fatalError("body outside the response") }
                guard !part.isEmpty else { fatalError("an empty body part") }
                reading.body += part
            case .end(let reusable):
                guard reading.head != nil, reading.reusable == nil else { fatalError("end without a head, or twice") }
                reading.reusable = reusable
            }
        }
        var start = 0
        do {
            for cut in cuts + [bytes.count] where cut >= start {
                path.append(ByteBuffer(bytes: bytes[start..<cut]))
                start = cut
                while let event = try path.next() { take(event) }
            }
            if let event = try path.inputClosed() { take(event) }
        } catch {
            if reading.reusable != nil {
                // Bytes that arrive after a complete response, in a later read: the connection
                // is out of step. Fed whole, the same bytes make that response's end unreusable.
                reading.reusable = false
            } else {
                reading.failed = true
            }
        }
        return reading
    }

    /// Up to 4 cut points derived from the input (deterministic, so a crash replays).
    static func cutPoints(_ bytes: [UInt8]) -> [Int] {
        guard bytes.count > 1 else { return [] }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        var cuts: [Int] = []
        for _ in 0..<Int(hash % 5) {
            hash = hash &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            cuts.append(Int((hash >> 33) % UInt64(bytes.count)))
        }
        return cuts.sorted()
    }

    // MARK: Client side

    static let hopByHop = Set(RequestHeadPath.hopByHop.map { Array($0.utf8) } + [Array("x-request-id".utf8)])

    /// The client receives the parsed response's status, the fields that are not hop-by-hop (nor
    /// named in `Connection`), and the same body, framed so that NIO's decoder reads exactly it.
    static func checkClientSide(_ upstream: [UInt8], head: ResponsePath.Head, body: [UInt8]) {
        var path = ResponsePath(method: .GET)
        path.append(ByteBuffer(bytes: upstream))
        var parts: [ByteBuffer] = []
        // Re-read to have the parser's own head for the rewrite; body parts of varying size
        // exercise the writer's coalescing.
        do {
            while let event = try path.next() {
                if case .body(let part) = event { parts.append(ByteBuffer(bytes: part)) }
            }
            _ = try path.inputClosed()
        } catch {
            // Trailing bytes after a complete response fail only the connection.
        }
        let sent = path.clientResponse(body: parts, requestID: "fuzz-1", isHEAD: false)

        var listed = Set<[UInt8]>()
        for field in head.fields where lower(field.name) == Array("connection".utf8) {
            for option in field.value.split(separator: UInt8(ascii: ",")) {
                let trimmed = lower(Array(option.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()))
                // `close` and `keep-alive` are taken as options, not field names: the gateway
                // passes on a field named `close` (RFC 9110 §7.6.1 would drop it; harmless).
                if trimmed != Array("close".utf8), trimmed != Array("keep-alive".utf8) { listed.insert(trimmed) }
            }
        }
        let expectedFields = head.fields.filter { !hopByHop.contains(lower($0.name)) && !listed.contains(lower($0.name)) }
            .map { (String(decoding: $0.name, as: UTF8.self), String(decoding: $0.value, as: UTF8.self)) }

        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandler(HTTPRequestEncoder())
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .fireError)))
            try channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
            try channel.writeOutbound(HTTPClientRequestPart.end(nil))
            while try channel.readOutbound(as: ByteBuffer.self) != nil {}
            try channel.writeInbound(ByteBuffer(bytes: sent))
        } catch {
            fatalError("NIO's decoder refuses what the gateway writes to a client (\(error)):\n\(String(decoding: sent, as: UTF8.self))")
        }
        var decodedHead: HTTPResponseHead?
        var decodedBody: [UInt8] = []
        var ended = false
        while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let received): decodedHead = received
            case .body(let buffer): decodedBody += Array(buffer: buffer)
            case .end: ended = true
            }
        }
        guard let decodedHead, ended else { fatalError("the client cannot find the end of the response:\n\(String(decoding: sent, as: UTF8.self))") }
        guard Int(decodedHead.status.code) == head.status else { fatalError("the client sees status \(decodedHead.status.code), not \(head.status)") }
        guard decodedBody == body else { fatalError("the client reads a body of \(decodedBody.count) bytes, the upstream sent \(body.count)") }
        let framing: Set<String> = ["content-length", "transfer-encoding", "x-request-id"]
        let received = decodedHead.headers.filter { !framing.contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
        guard received.map({ $0.0 }) == expectedFields.map({ $0.0 }), received.map({ $0.1 }) == expectedFields.map({ $0.1 }) else {
            fatalError("the client's fields \(received) are not the upstream's \(expectedFields)")
        }
        guard decodedHead.headers["x-request-id"] == ["fuzz-1"] else { fatalError("X-Request-Id missing or doubled") }
        let lengths = decodedHead.headers["content-length"]
        guard lengths.count <= 1, lengths.first.map({ Int($0) == head.contentLength }) ?? true else {
            fatalError("the client is told Content-Length \(lengths), the upstream's was \(head.contentLength.map(String.init) ?? "none")")
        }
    }

    static func lower(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    // MARK: Seeds

    static let responseSeeds: [[UInt8]] = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2, 2\r\nConnection: close\r\n\r\nok",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.0 200 OK\r\n\r\nuntil the close",
        "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n1\r\na\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw bytes to the close",
        "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: up\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nX-Nul: a\u{0}b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 999 \r\nX-Obs: caf\u{e9}\r\nContent-Length: 0\r\n\r\n",
    ].map { Array($0.utf8) }

    static let chunkedSeeds: [[UInt8]] = [
        "5\r\nhello\r\n0\r\n\r\n",
        "1;a=b;c\r\nx\r\n0\r\n\r\n",
        "A \r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "0000000000000001\r\nx\r\n0\r\n\r\n",
        "fffffffffffffff\r\nabc",
        "3\r\nabc\n0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",
        "-1\r\n\r\n",
        "0x3\r\nabc\r\n0\r\n\r\n",
        "3;\u{0}\r\nabc\r\n0\r\n\r\n",
        "0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    ].map { Array($0.utf8) }
}
