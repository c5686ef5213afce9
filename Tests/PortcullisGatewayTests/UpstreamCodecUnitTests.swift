@testable import PortcullisFuzz
@testable import PortcullisGateway
import NIOCore
import NIOHTTP1
import Testing

@Suite("HTTP/1.1 bytes: upstream response parser, request and response writer")
struct UpstreamCodecUnitTests {
    /// What a parse produced, flattened for comparison.
    struct Outcome: Equatable {
        var status: Int?
        var headers: [String] = []
        var body = ""
        var ends: [Bool] = []
    }

    /// Feeds `chunks` in order (as separate reads), then optionally the connection closing.
    static func parse(_ chunks: [String], method: HTTPMethod = .GET, close: Bool = false) throws -> Outcome {
        var parser = UpstreamResponseParser()
        parser.expectResponse(to: method)
        var outcome = Outcome()
        func record(_ event: UpstreamResponseParser.Event) {
            switch event {
            case .head(let head):
                outcome.status = Int(head.status.code)
                outcome.headers = Self.lines(head)
            case .body(let body):
                outcome.body += String(buffer: body)
            case .end(let reusable):
                outcome.ends.append(reusable)
            }
        }
        for chunk in chunks {
            parser.append(ByteBuffer(string: chunk))
            while let event = try parser.next() { record(event) }
        }
        if close, let event = try parser.inputClosed() { record(event) }
        return outcome
    }

    /// The head's fields as `Name: value`, the framing length first.
    static func lines(_ head: UpstreamResponseHead) -> [String] {
        let fields = head.withBytes { bytes in
            head.fields.map { String(decoding: bytes[$0.name], as: UTF8.self) + ": " + String(decoding: bytes[$0.value], as: UTF8.self) }
        }
        return (head.contentLength.map { ["Content-Length: \($0)"] } ?? []) + fields
    }

    /// The same response fed whole, then split in two at every byte: all must agree.
    static func parseEverySplit(_ response: String, method: HTTPMethod = .GET, close: Bool = false) throws -> Outcome {
        let whole = try parse([response], method: method, close: close)
        let bytes = Array(response.utf8)
        for cut in 1..<bytes.count {
            let split = try parse([String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self)],
                                  method: method, close: close)
            #expect(split == whole, "split at byte \(cut)")
        }
        return whole
    }

    @Test("Content-Length: head fields kept in order, exact body, connection reusable")
    func contentLength() throws {
        let outcome = try Self.parseEverySplit("HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A:  spaced value \t\r\nSet-Cookie: a=b\r\n\r\nhello")
        #expect(outcome == Outcome(status: 201, headers: ["Content-Length: 5", "X-A: spaced value", "Set-Cookie: a=b"], body: "hello", ends: [true]))
    }

    @Test("a head with a line (the status line or a field's) ending in a bare LF fails as soon as that line has come, in whatever pieces, not when the head would have ended; one whose lines end in CRLF waits for the rest")
    func bareLineFeedFailsAtOnce() throws {
        let cases: [(pieces: [String], bare: Bool)] = [
            (["HTTP/1.1 200 OK\nContent-Length: 2\n"], true), (["HTTP/1.1 20", "0 OK", "\n"], true), (["\n"], true),
            (["HTTP/1.1 200 OK\r", "\n", "X: 1\n"], true), (["HTTP/1.1 200 OK\r\nX: 1\r\nY: 2\n"], true),
            (["HTTP/1.1 200 OK\r\nX: 1", "\r", "\nY", ": 2", "\n"], true),
            (["HTTP/1.1 200 OK\r", "\n", "X: 1\r\n"], false), (["HTTP/1.1 200 OK\r\nX: 1\r", "\nY: 2\r\n"], false),
        ]
        for (pieces, bare) in cases {
            var parser = UpstreamResponseParser()
            parser.expectResponse(to: .GET)
            var failed = false
            for piece in pieces {
                parser.append(ByteBuffer(string: piece))
                do { _ = try parser.next() } catch { failed = true }
            }
            #expect(failed == bare, "\(pieces)")
        }
        // After a 1xx head that ended properly, the next head's first line is checked again.
        var parser = UpstreamResponseParser()
        parser.expectResponse(to: .GET)
        parser.append(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\n"))
        #expect(throws: (any Error).self) { while try parser.next() != nil {} }
    }

    @Test("a head kept while the next response on the connection is parsed keeps its own fields")
    func headOutlivesNextResponse() throws {
        var parser = UpstreamResponseParser()
        parser.expectResponse(to: .GET)
        parser.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\nX-First: 1\r\nX-Also: a\r\nContent-Length: 0\r\n\r\n"))
        guard case .head(let first) = try parser.next(), case .end(true) = try parser.next() else {
            Issue.record("first response")
            return
        }
        parser.expectResponse(to: .GET)
        parser.append(ByteBuffer(string: "HTTP/1.1 404 Not Found\r\nX-Second-Field: 22\r\nContent-Length: 0\r\n\r\n"))
        guard case .head(let second) = try parser.next() else {
            Issue.record("second response")
            return
        }
        #expect(Self.lines(first) == ["Content-Length: 0", "X-First: 1", "X-Also: a"])
        #expect(Self.lines(second) == ["Content-Length: 0", "X-Second-Field: 22"])
    }

    @Test("list fields: elements trimmed, empty ones skipped")
    func listElements() throws {
        var elements: [String] = []
        HeaderList.forEachElement(" a ,, \tb\t, ,c,".utf8) { elements.append(String(decoding: $0, as: UTF8.self)) }
        #expect(elements == ["a", "b", "c"])
        // A field of empty elements names no coding, and does not end in chunked.
        var empty = TransferCodings()
        empty.add(" , ".utf8)
        #expect(empty.present && empty.count == 0 && !empty.lastFieldEndsChunked && !empty.isOneChunked)
        // The last field decides how a request ends; every field counts toward "one chunked".
        var twoFields = TransferCodings()
        twoFields.add("gzip".utf8)
        twoFields.add(" chunked ".utf8)
        #expect(twoFields.lastFieldEndsChunked && twoFields.otherThanChunked && !twoFields.isOneChunked)
        let chunked = try Self.parse(["HTTP/1.1 200 OK\r\nTransfer-Encoding: , Chunked ,\r\n\r\n3\r\nabc\r\n0\r\n\r\n"])
        #expect(chunked.body == "abc" && chunked.ends == [true])
        let closing = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: ,keep-alive , close\r\n\r\nx"])
        #expect(closing.ends == [false])
    }

    @Test("chunked with extensions and trailers decodes to the payload")
    func chunked() throws {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-A: x\r\n\r\n"
        let outcome = try Self.parseEverySplit(response)
        #expect(outcome.body == "hello world")
        #expect(outcome.ends == [true])
    }

    @Test("no body for HEAD, 204 and 304, whatever the framing headers say; a connection whose bodyless answer framed a body is not reused")
    func bodiless() throws {
        // A body the head frames may still come (an upstream's bug), in a later read, and be
        // taken for the next request's response: such a connection is not reused.
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"], method: .HEAD) == Outcome(status: 200, headers: ["Content-Length: 10"], ends: [false]))
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], method: .HEAD).ends == [false])
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], method: .HEAD).ends == [true])
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\n\r\n"], method: .HEAD).ends == [true])
        #expect(try Self.parse(["HTTP/1.1 204 No Content\r\n\r\n"]).ends == [true])
        // A 204 has no content and so no length to pass on; a 304 states the representation's.
        #expect(try Self.parse(["HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"]).headers == [])
        #expect(try Self.parse(["HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"]).headers == ["Content-Length: 3"])
        #expect(try Self.parse(["HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"]).ends == [false])
        #expect(try Self.parse(["HTTP/1.1 304 Not Modified\r\n\r\n"]).ends == [true])
    }

    @Test("1xx heads are skipped; the final head follows")
    func informational() throws {
        let outcome = try Self.parseEverySplit("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(outcome.status == 200)
        #expect(outcome.body == "ok")
    }

    /// The build before skipped interim heads without a count: an upstream sending them without
    /// end held the event loop until the response-header timeout.
    @Test("an upstream's interim (1xx) heads are limited: 8 are skipped, a 9th fails the response")
    func interimHeadsLimited() throws {
        let interim = String(repeating: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", count: UpstreamResponseParser.maxInterimHeads)
        let final = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        #expect(try Self.parse([interim + final]).body == "ok")
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse([interim + "HTTP/1.1 100 Continue\r\n\r\n" + final]) }
    }

    /// The build before read any extensions within the line limit: 1-byte chunks each carrying
    /// 4 KB of them held a core while the client got a byte per chunk (an attacker review).
    @Test("chunked framing far beyond the data it carries fails the response; extensions in proportion to the data pass")
    func chunkFramingLimited() throws {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        let padded = "1;x=" + String(repeating: "y", count: 4000) + "\r\nz\r\n"
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse([head + String(repeating: padded, count: 5) + "0\r\n\r\n"]) }
        // The same extensions on 2 KB chunks: framing below twice the data.
        let proportionate = "800;x=" + String(repeating: "y", count: 4000) + "\r\n" + String(repeating: "d", count: 2048) + "\r\n"
        let outcome = try Self.parse([head + String(repeating: proportionate, count: 20) + "0\r\n\r\n"])
        #expect(outcome.body.count == 20 * 2048 && outcome.ends == [true])
        // 1-byte chunks without extensions are framing, not excess.
        #expect(try Self.parse([head + String(repeating: "1\r\nz\r\n", count: 10_000) + "0\r\n\r\n"]).body.count == 10_000)
    }

    @Test("without framing the body runs to the close and the connection is not reused")
    func untilClose() throws {
        let outcome = try Self.parseEverySplit("HTTP/1.1 200 OK\r\n\r\nall of it", close: true)
        #expect(outcome.body == "all of it")
        #expect(outcome.ends == [false])
    }

    @Test("Connection: close, HTTP/1.0 without keep-alive, bytes after the response, TE with CL: not reusable")
    func notReusable() throws {
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]).ends == [false])
        #expect(try Self.parse(["HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"]).ends == [false])
        #expect(try Self.parse(["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"]).ends == [true])
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab"]).ends == [false])
        let both = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"])
        #expect(both.body == "ok")
        #expect(both.ends == [false])
    }

    @Test("the forwarded head states the framing the body was read by: one plain Content-Length, none beside Transfer-Encoding")
    func forwardedFraming() throws {
        // A Content-Length left beside Transfer-Encoding would let the client frame the body
        // differently (and read the upstream's chunk data as the next response).
        let both = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n"])
        #expect(both.headers == ["Transfer-Encoding: chunked", "X-A: 1"])
        let list = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nok"])
        #expect(list.headers == ["Content-Length: 2"])
        #expect(list.ends == [true])
    }

    @Test("a head trickling in a few bytes at a time is found once complete")
    func trickledHead() throws {
        let response = "HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "v", count: 3000) + "\r\nContent-Length: 2\r\n\r\nok"
        let bytes = Array(response.utf8)
        let pieces = stride(from: 0, to: bytes.count, by: 7).map { String(decoding: bytes[$0..<min($0 + 7, bytes.count)], as: UTF8.self) }
        let outcome = try Self.parse(pieces)
        #expect(outcome.status == 200)
        #expect(outcome.body == "ok")
        #expect(outcome.ends == [true])
    }

    @Test("chunk-size and trailer lines trickling in a byte at a time are found once complete, the body and the end as when sent whole")
    func trickledTrailers() throws {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=" + String(repeating: "e", count: 500) + "\r\nok\r\n0\r\nX-Trailer: "
            + String(repeating: "t", count: 5000) + "\r\nX-Other: 1\r\n\r\n"
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        let rest = Array(response.utf8.dropFirst(head.utf8.count))
        let outcome = try Self.parse([head] + rest.map { String(decoding: [$0], as: UTF8.self) })
        #expect(outcome.status == 200)
        #expect(outcome.body == "ok")
        #expect(outcome.ends == [true])
    }

    @Test("malformed responses are refused", arguments: [
        "HTTP/1.1 600 Library Error\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, , 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A\r: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    ])
    func malformed(_ response: String) {
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse([response]) }
    }

    /// The gateway decodes `chunked` only and does not forward `Transfer-Encoding` (hop by hop):
    /// a body in any other coding would reach the client with its coding undeclared. The build
    /// before read `gzip` to the close and `gzip, chunked` as plain chunked, dropping the `gzip`.
    @Test("a body framed by a transfer coding other than one chunked fails the response; without a body (HEAD, 304, an interim head) the codings are not checked", arguments: [
        "Transfer-Encoding: gzip\r\n\r\nzipped",
        "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked;q=1\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding: identity\r\n\r\nplain",
        "Transfer-Encoding: \r\n\r\nplain",
    ])
    func otherTransferCodings(_ rest: String) throws {
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse(["HTTP/1.1 200 OK\r\n" + rest], close: true) }
        let head = String(rest.prefix(upTo: rest.range(of: "\r\n\r\n")!.upperBound))
        // RFC 9112 §6.1: a response to HEAD or a 304 may name the coding a GET would get; no body
        // follows, and the Content-Length beside it is not passed on.
        let toHEAD = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 7\r\n" + head], method: .HEAD)
        // (A head framing a body where none follows leaves its connection out of reuse.)
        #expect(toHEAD.status == 200 && toHEAD.body.isEmpty && toHEAD.ends == [false])
        #expect(!toHEAD.headers.contains { $0.hasPrefix("Content-Length") })
        #expect(try Self.parse(["HTTP/1.1 304 Not Modified\r\n" + head]).ends == [false])
        #expect(try Self.parse(["HTTP/1.1 103 Early Hints\r\n" + head + "HTTP/1.1 204 No Content\r\n\r\n"]).status == 204)
    }

    @Test("a head over the limit, and a connection closed mid-body, are errors")
    func limitsAndTruncation() {
        let huge = "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "a", count: UpstreamResponseParser.maxHeadBytes) + "\r\n\r\n"
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse([huge]) }
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], close: true) }
        #expect(throws: UpstreamResponseParser.Failure.self) { try Self.parse(["HTTP/1.1 200 OK\r\nContent-Le"], close: true) }
    }

    @Test("bytes before any request are refused")
    func outOfStep() {
        var parser = UpstreamResponseParser()
        parser.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
        #expect(throws: UpstreamResponseParser.Failure.self) { try parser.next() }
    }

    @Test("random corruptions and splits of valid responses: the parser agrees with an independent RFC 9112 reading, fed whole or in pieces")
    func randomized() {
        // Deterministic (SplitMix64) so a failure replays; bounds checks make any out-of-range
        // access a trap, which fails the run.
        var state: UInt64 = 0x5EED_1234
        func random(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
        let seeds = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\nuntil close",
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 3, 3\r\n\r\nnah",
        ].map { Array($0.utf8) }
        let alphabet = Array("\r\n:; ,0aF-HTTP/1.1chunkedContent-Length\t\u{0}\u{7F}\u{FF}".utf8)
        var decided = (messages: 0, refusals: 0)
        for _ in 0..<20_000 {
            var bytes = seeds[random(seeds.count)]
            for _ in 0..<(1 + random(4)) {
                let position = random(bytes.count + 1)
                switch random(3) {
                case 0 where position < bytes.count: bytes[position] = alphabet[random(alphabet.count)]
                case 1 where position < bytes.count: bytes.remove(at: position)
                default: bytes.insert(alphabet[random(alphabet.count)], at: position)
                }
            }
            if random(5) == 0 {
                #expect(Self.headBodyBytes(bytes, cuts: Self.cuts(bytes.count, random)) == 0, "a body in a response to HEAD")
                continue
            }
            // As the answer to a GET, fed whole and in pieces, then the connection closing.
            let whole = ResponseHarness.read(bytes, cuts: [])
            let split = ResponseHarness.read(bytes, cuts: Self.cuts(bytes.count, random))
            #expect(split == whole, "fed in pieces: \(split); whole: \(whole)\n\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            switch ResponseOracle.read(bytes) {
            case .unsure:
                break
            case .invalid:
                decided.refusals += 1
                #expect(whole.failed, "the parser accepted what RFC 9112 refuses: \(whole)\n\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            case .message(let expected):
                decided.messages += 1
                guard !whole.failed, let head = whole.head, let reusable = whole.reusable else {
                    Issue.record("the parser refused a response RFC 9112 reads as \(expected.status), body \(expected.body.count) bytes: \(whole)")
                    continue
                }
                let got = ResponseOracle.Message(status: head.status, minorVersion: head.minorVersion,
                                                 fields: head.fields.map { (name: $0.name, value: $0.value) },
                                                 contentLength: head.contentLength, body: whole.body, reusable: reusable)
                let oracle = "status \(expected.status), body \(expected.body.count) bytes, length \(expected.contentLength.map(String.init) ?? "-"), reusable \(expected.reusable)"
                #expect(got == expected, "parser: \(whole); oracle: \(oracle)\n\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            }
        }
        // The comparison decided most inputs, both ways (not a test that only detects crashes).
        #expect(decided.messages > 2_000 && decided.refusals > 2_000, "\(decided)")
    }

    /// Up to 4 sorted cut points in `0..<count`.
    static func cuts(_ count: Int, _ random: (Int) -> Int) -> [Int] {
        guard count > 1 else { return [] }
        return (0..<random(5)).map { _ in random(count) }.sorted()
    }

    /// Body bytes the parser yields for `bytes` read as the answer to a HEAD.
    static func headBodyBytes(_ bytes: [UInt8], cuts: [Int]) -> Int {
        var parser = UpstreamResponseParser()
        parser.expectResponse(to: .HEAD)
        var bodyBytes = 0
        var start = 0
        do {
            for cut in cuts + [bytes.count] where cut >= start {
                parser.append(ByteBuffer(bytes: bytes[start..<cut]))
                start = cut
                while let event = try parser.next() {
                    if case .body(let body) = event { bodyBytes += body.readableBytes }
                }
            }
            _ = try parser.inputClosed()
        } catch {
            // A malformed response fails the exchange; what matters here is that no body came.
        }
        return bodyBytes
    }

    @Test("the writer sends the head as HTTP/1.1 and frames chunked bodies; empty parts are not chunks")
    func writer() {
        let allocator = ByteBufferAllocator()
        var writer = HTTP1Writer()
        let head = UpstreamRequestHead(method: .POST, uri: "/a?b=c", fields: [("Host", "x"), ("transfer-encoding", "chunked")], isChunked: true)
        #expect(String(buffer: writer.request(head, allocator: allocator)) == "POST /a?b=c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        let part = ByteBuffer(string: String(repeating: "z", count: 26))
        #expect(writer.chunkPrefix(for: part, allocator: allocator).map { String(buffer: $0) } == "1a\r\n")
        #expect(writer.chunkSuffix(for: part, allocator: allocator).map { String(buffer: $0) } == "\r\n")
        #expect(writer.chunkPrefix(for: ByteBuffer(), allocator: allocator) == nil)
        #expect(writer.end(allocator: allocator).map { String(buffer: $0) } == "0\r\n\r\n")

        let plain = UpstreamRequestHead(method: .GET, uri: "/", fields: [("Content-Length", "3")], isChunked: false)
        _ = writer.request(plain, allocator: allocator)
        #expect(writer.chunkPrefix(for: part, allocator: allocator) == nil)
        #expect(writer.end(allocator: allocator) == nil)
    }

    @Test("client responses: the framing follows the status, the request method and the client's version")
    func responseFraming() {
        func framing(_ status: HTTPResponseStatus, length: Int?, version: HTTPVersion = .http1_1, head: Bool = false) -> HTTP1Writer.Framing {
            HTTP1Writer.responseFraming(ClientResponseHead(version: version, status: status, contentLength: length), bodyless: head)
        }
        #expect(framing(.ok, length: 3) == .length)
        #expect(framing(.ok, length: nil) == .chunked)
        #expect(framing(.ok, length: nil, version: .http1_0) == .close)
        #expect(framing(.ok, length: 3, version: .http1_0) == .length)
        // No body can follow these, whatever the head says: nothing may be framed.
        #expect(framing(.ok, length: nil, head: true) == .none)
        #expect(framing(.ok, length: 3, head: true) == .none)
        #expect(framing(.noContent, length: nil) == .none)
        #expect(framing(.notModified, length: nil) == .none)
        #expect(framing(.continue, length: nil) == .none)
    }

    @Test("gateway responses are written byte for byte, in the client's version")
    func responseBytes() {
        let allocator = ByteBufferAllocator()
        var writer = HTTP1Writer()
        let chunked = ClientResponseHead(version: .http1_1, status: .ok, contentLength: nil, fields: [("Content-Type", "text/plain"), ("X-Request-Id", "r1")])
        #expect(String(buffer: writer.response(chunked, framing: .chunked, allocator: allocator))
            == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: r1\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(writer.chunkPrefix(for: ByteBuffer(string: "abc"), allocator: allocator).map { String(buffer: $0) } == "3\r\n")
        #expect(writer.end(allocator: allocator).map { String(buffer: $0) } == "0\r\n\r\n")

        let old = ClientResponseHead(version: .http1_0, status: .init(statusCode: 599), contentLength: 0)
        #expect(String(buffer: writer.response(old, framing: .length, allocator: allocator)) == "HTTP/1.0 599 \r\nContent-Length: 0\r\n\r\n")
        #expect(writer.end(allocator: allocator) == nil)

        let head = ClientResponseHead(version: .http1_1, status: .notFound, contentLength: 12)
        #expect(String(buffer: writer.response(head, framing: .none, allocator: allocator)) == "HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n")
        #expect(writer.chunkPrefix(for: ByteBuffer(string: "abc"), allocator: allocator) == nil)
        #expect(writer.end(allocator: allocator) == nil)
    }

    @Test("a small response leaves in one buffer; a large body part follows the head uncopied")
    func responseCoalescing() {
        let allocator = ByteBufferAllocator()
        var output = ResponseOutput()
        var written: [String] = []
        func write(_ buffer: ByteBuffer, _: EventLoopPromise<Void>?) { written.append(String(buffer: buffer)) }

        let sized = ClientResponseHead(version: .http1_1, status: .ok, contentLength: 5)
        output.head(sized, framing: .length, bodyLength: 5, allocator: allocator)
        output.body(ByteBuffer(string: "hello"), allocator: allocator, write: write)
        #expect(written.isEmpty)
        #expect(output.end(allocator: allocator).map { String(buffer: $0) } == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        #expect(output.end(allocator: allocator) == nil)

        // Chunked parts are framed as they are copied (an empty part is no chunk); the last chunk joins them.
        let unsized = ClientResponseHead(version: .http1_1, status: .ok, contentLength: nil)
        output.head(unsized, framing: .chunked, bodyLength: nil, allocator: allocator)
        output.body(ByteBuffer(string: "abc"), allocator: allocator, write: write)
        output.body(ByteBuffer(), allocator: allocator, write: write)
        #expect(written.isEmpty)
        #expect(output.end(allocator: allocator).map { String(buffer: $0) }
            == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")

        // A flush takes what is held back; what follows is written as it comes.
        output.head(unsized, framing: .chunked, bodyLength: nil, allocator: allocator)
        output.body(ByteBuffer(string: "abc"), allocator: allocator, write: write)
        #expect(output.takeUnsent().map { String(buffer: $0) } == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        output.body(ByteBuffer(string: "de"), allocator: allocator, write: write)
        #expect(written == ["2\r\n", "de", "\r\n"])
        #expect(output.end(allocator: allocator).map { String(buffer: $0) } == "0\r\n\r\n")

        // Over the limit: the head goes first and the part is written as it is, not copied.
        written = []
        let limit = ResponseOutput.coalescedBodyLimit
        let large = ByteBuffer(repeating: UInt8(ascii: "x"), count: limit + 1)
        output.head(ClientResponseHead(version: .http1_1, status: .ok, contentLength: limit + 1), framing: .length,
                    bodyLength: limit + 1, allocator: allocator)
        output.body(large, allocator: allocator, write: write)
        #expect(written == ["HTTP/1.1 200 OK\r\nContent-Length: \(limit + 1)\r\n\r\n", String(buffer: large)])
        #expect(output.end(allocator: allocator) == nil)

        // No body may follow a response to HEAD: parts are dropped, the head goes alone.
        written = []
        output.head(sized, framing: .none, bodyLength: 5, allocator: allocator)
        output.body(ByteBuffer(string: "hello"), allocator: allocator, write: write)
        #expect(written.isEmpty)
        #expect(output.end(allocator: allocator).map { String(buffer: $0) } == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")

        // The head's buffer is sized for the body that is to join it.
        var writer = HTTP1Writer()
        let head = writer.response(sized, framing: .length, bodyRoom: limit, allocator: allocator)
        #expect(head.capacity >= head.readableBytes + limit)
    }

    @Test("multi-byte UTF-8 in a value is sized and copied exactly")
    func responseUTF8() {
        var writer = HTTP1Writer()
        let head = ClientResponseHead(version: .http1_1, status: .ok, contentLength: 0, fields: [("X-Name", "Zoë ✓")])
        #expect(String(buffer: writer.response(head, framing: .length, allocator: ByteBufferAllocator()))
            == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Name: Zoë ✓\r\n\r\n")
    }
}
