import Foundation
import PortcullisTestSupport
import Testing

/// Request framing, differentially: a real gateway process in front of `RecordingUpstream`, which
/// records exactly the requests it receives, against Python's h11 (`cluster/h11-framing.py`), an
/// HTTP/1.1 implementation independent of the llhttp decoder the gateway uses. For every case of a
/// corpus of smuggling shapes the raw bytes go to the gateway on one connection; the requests the
/// upstream received must be the requests h11 reads from the same bytes — same methods, targets,
/// bodies, in order — and the two must agree on refusing.
///
/// Where the gateway refuses bytes h11 accepts, the case names why that is harmless: the gateway
/// forwarded only requests h11 also reads (a prefix of them) and nothing from the point it refused.
/// The opposite — the gateway forwarding a request h11 frames differently or refuses — has no
/// allowance: it is what request smuggling needs.
@Suite("request framing: gateway against h11", .serialized)
final class RequestFramingDifferentialTests {
    struct Case: Sendable {
        let name: String
        let bytes: [UInt8]
        /// Why it is harmless that the gateway refuses where h11 reads on; nil: they must agree.
        let gatewayStricter: String?

        init(_ name: String, _ text: String, gatewayStricter: String? = nil) {
            self.name = name
            self.bytes = Array(text.utf8)
            self.gatewayStricter = gatewayStricter
        }
    }

    /// RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator; llhttp refuses it
    /// (HPE_LF_EXPECTED / HPE_CR_EXPECTED), h11 accepts it.
    static let bareLF = "llhttp requires CRLF (RFC 9112 §2.2 allows either choice); refusing cannot desynchronise anything"
    /// RFC 9112 §5.2: a server MUST either reject obs-fold with 400 or replace it with spaces; h11 unfolds.
    static let obsFold = "RFC 9112 §5.2 lets a server reject obs-fold with 400, which llhttp does; h11 unfolds it"
    /// RFC 9112 §6.1: Transfer-Encoding with Content-Length "ought to be handled as an error"; a
    /// server MAY reject it. h11 lets Transfer-Encoding win.
    static let bothLengths = "RFC 9112 §6.1 lets a server reject a request with both Transfer-Encoding and Content-Length; llhttp does, h11 lets chunked win"
    /// RFC 9112 §6.3 ¶5: a recipient of repeated equal Content-Length values MAY reject them or use the one value.
    static let repeatedLength = "RFC 9112 §6.3 lets a recipient reject repeated Content-Length values even when equal; llhttp does, h11 uses the one value"
    /// RFC 9110 §5.5: control bytes other than HTAB are not valid in a field value; h11 lets them through.
    static let controlInValue = "control bytes are invalid in a field value (RFC 9110 §5.5); llhttp refuses them, h11 passes them on"
    static let corpus: [Case] = [
        // Baselines.
        Case("a plain GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("pipelined GET, POST with a length, chunked POST",
             "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"),
        Case("a body that contains a second request is one request",
             "POST /outer HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("a chunked body that contains a second request is one request",
             "POST /outer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n"),
        Case("a body cut short leaves the request incomplete", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
        Case("HTTP/1.0 with a body, then Connection: close ends the connection",
             "POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("Connection: close ends the connection after its request",
             "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"),

        // CL.TE and TE.CL.
        Case("CL.TE: Content-Length frames less than the chunked body",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
             gatewayStricter: bothLengths),
        Case("TE.CL: the chunked body frames more than Content-Length",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
             gatewayStricter: bothLengths),
        Case("Content-Length: 0 beside Transfer-Encoding: chunked",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", gatewayStricter: bothLengths),

        // Obfuscated Transfer-Encoding.
        Case("Transfer-Encoding: 'chunked ' (trailing OWS) is chunked",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked \r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: tab before chunked is chunked",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: CHUNKED in capitals is chunked",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: xchunked is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("a space before the colon of Transfer-Encoding is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: chunked twice is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: chunked, identity (chunked not last) is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
        Case("Transfer-Encoding: identity alone is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nz"),
        Case("Transfer-Encoding folded onto a second line (obs-fold) is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", gatewayStricter: obsFold),
        Case("Transfer-Encoding in an HTTP/1.0 request",
             "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),

        // Content-Length.
        Case("two equal Content-Length fields",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", gatewayStricter: repeatedLength),
        Case("two different Content-Length fields are refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"),
        Case("Content-Length: 3, 3 as a list",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", gatewayStricter: repeatedLength),
        Case("Content-Length: +5 is refused", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
        Case("Content-Length: -1 is refused", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        Case("Content-Length: 0x5 is refused", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello"),
        Case("Content-Length with leading zeros", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nhello"),
        Case("Content-Length past 2^64 is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nhello"),

        // Chunk sizes and extensions.
        Case("a chunk size past 2^64 is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nz\r\n0\r\n\r\n",
             gatewayStricter: "h11 reads any number of hex digits (a Python integer) and waits for 2^68 bytes; llhttp refuses a size past 2^64. Neither ends a request"),
        Case("a chunk size with 16 hex digits that overflows a signed length",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nz\r\n0\r\n\r\n"),
        Case("a chunk size with a 0x prefix is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nz\r\n0\r\n\r\n"),
        Case("a negative chunk size is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nz\r\n0\r\n\r\n"),
        Case("chunk extensions are skipped",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;name=value\r\nz\r\n2;flag\r\nyy\r\n0;last=\"q\"\r\n\r\n"),
        Case("trailer fields end a chunked body",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("chunk data longer than its size is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nzz\r\n0\r\n\r\n"),

        // Bare LF.
        Case("a request head with bare LF line ends", "GET /a HTTP/1.1\nHost: x\n\n", gatewayStricter: bareLF),
        Case("a header line ended by a bare LF", "GET /a HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", gatewayStricter: bareLF),
        Case("a chunk-size line ended by a bare LF",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\nz\r\n0\r\n\r\n", gatewayStricter: bareLF),
        Case("chunk data ended by a bare LF",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\n0\r\n\r\n", gatewayStricter: bareLF),
        Case("a bare CR in a header value is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n"),

        // obs-fold.
        Case("an obs-folded header value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", gatewayStricter: obsFold),
        Case("whitespace before the first header line",
             "GET /a HTTP/1.1\r\n Host: x\r\n\r\n"),

        // NUL and control bytes.
        Case("a NUL in a header value is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\u{0}2\r\n\r\n"),
        Case("a NUL in a header name is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX-\u{0}A: 1\r\n\r\n"),
        Case("a control byte in a header value is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\u{1}2\r\n\r\n", gatewayStricter: controlInValue),
        Case("DEL in a header value is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\u{7F}2\r\n\r\n", gatewayStricter: controlInValue),
        Case("a NUL in the request target is refused", "GET /a\u{0}b HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("a NUL in a chunk extension is refused",
             "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a\u{0}b\r\nz\r\n0\r\n\r\n",
             gatewayStricter: "h11 skips chunk extensions unread; llhttp refuses a NUL in one. Neither forwards anything after it"),
        Case("a tab inside a header name is refused", "GET /a HTTP/1.1\r\nHost: x\r\nX\tA: 1\r\n\r\n"),
    ]

    let upstream: RecordingUpstream
    let gateway: GatewayProcess

    init() async throws {
        upstream = try await RecordingUpstream.start()
        let address = upstream.address
        gateway = try await GatewayProcess.start { port, adminPort, _ in
            """
            listen: 127.0.0.1:\(port)
            admin_listen: 127.0.0.1:\(adminPort)
            event_loops: 1
            routes:
              - name: all
                path_prefix: /
                upstream: {targets: [\(address)]}
            """
        }
    }

    deinit {
        let gateway = self.gateway, upstream = self.upstream
        Task {
            await gateway.stop()
            await upstream.stop()
        }
    }

    /// How h11 reads one case.
    struct Reference {
        var requests: [RecordingUpstream.Request]
        var end: String
        var reason: String?
    }

    static func reference(_ cases: [Case]) throws -> [Reference] {
        let input = try JSONSerialization.data(withJSONObject: cases.map { $0.bytes.map { String(format: "%02x", $0) }.joined() })
        let script = PortcullisBinary.packageRoot + "/cluster/h11-framing.py"
        let result = try runCommand("/usr/bin/env", ["python3", script], stdin: String(decoding: input, as: UTF8.self))
        guard result.status == 0, let output = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] else {
            throw FixtureError("h11-framing.py failed (is h11 installed? cluster/setup.sh installs it): \(result.stderr)")
        }
        return output.map { item in
            let requests = (item["requests"] as? [[String: String]] ?? []).map { request in
                RecordingUpstream.Request(method: request["method"] ?? "", target: request["target"] ?? "", body: hexBytes(request["body"] ?? ""))
            }
            return Reference(requests: requests, end: item["end"] as? String ?? "?", reason: item["reason"] as? String)
        }
    }

    static func hexBytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    /// What the gateway did with one case: what reached the upstream, what the client got back.
    struct Observed: CustomStringConvertible {
        var requests: [RecordingUpstream.Request]
        var statuses: [Int]
        var closed: Bool
        var partial: Int
        var malformed: [String]
        var refused: Bool { statuses.contains(400) || closed }
        var description: String {
            "upstream got \(requests), client got \(statuses)\(closed ? ", then the connection closed" : ""), partial requests upstream \(partial)"
        }
    }

    func send(_ bytes: [UInt8], expecting responses: Int) throws -> Observed {
        // Every case starts with an idle pooled upstream connection, as on a busy gateway: a
        // request is then written upstream at once rather than after a connect.
        let warmUp = try gateway.request("GET", "/warm-up")
        guard warmUp.status == 200 else { throw FixtureError("warm-up request: \(warmUp.status)") }
        upstream.reset()
        // A short read timeout: the gateway answers on loopback within milliseconds, and a case
        // where it waits for more bytes must not stall the suite.
        let client = try gateway.client(timeout: 0.7)
        defer { client.close() }
        try client.send(bytes)
        var statuses: [Int] = []
        var closed = false
        while statuses.count <= responses {
            do {
                statuses.append(try client.readResponse().status)
            } catch HTTPTestClientError.closed {
                closed = true
                break
            } catch {
                break  // the read timed out: the gateway is waiting for more bytes
            }
        }
        return Observed(requests: upstream.requests, statuses: statuses, closed: closed,
                        partial: upstream.partialRequests, malformed: upstream.malformed)
    }

    @Test("the gateway and h11 agree on where every request of the smuggling corpus ends, or both refuse")
    func smugglingCorpus() throws {
        let references = try Self.reference(Self.corpus)
        var report: [String] = []
        for (testCase, reference) in zip(Self.corpus, references) {
            let observed = try send(testCase.bytes, expecting: reference.requests.count)
            var line = "\(testCase.name): h11 reads \(reference.requests) and ends '\(reference.end)'\(reference.reason.map { " (\($0))" } ?? ""); \(observed)"
            Self.compare(testCase, reference, observed, line: &line)
            report.append(line)
        }
        // The whole table, for the record (docs/fuzzing.md summarises it).
        print(report.joined(separator: "\n"))
    }

    static func compare(_ testCase: Case, _ reference: Reference, _ observed: Observed, line: inout String) {
        #expect(observed.malformed.isEmpty, "\(testCase.name): the upstream could not read what the gateway sent: \(observed.malformed)")
        if observed.requests == reference.requests {
            switch reference.end {
            case "error":
                #expect(observed.refused, "h11 refuses, the gateway does not. \(line)")
            case "complete", "incomplete":
                if observed.refused, let why = testCase.gatewayStricter {
                    line += " — gateway stricter: \(why)"
                    return
                }
                #expect(!observed.refused, "the gateway refuses, h11 does not. \(line)")
                if reference.end == "complete" {
                    #expect(observed.statuses.count == reference.requests.count && observed.partial == 0, "\(line)")
                }
            case "close":
                #expect(!observed.statuses.contains(400) && observed.closed, "\(line)")
            default:
                Issue.record("h11-framing.py: unknown end \(reference.end)")
            }
            return
        }
        // The gateway refused earlier than h11: harmless only where the case says why, and only
        // if what it forwarded is what h11 reads before that point.
        let prefix = observed.requests.count < reference.requests.count
            && Array(reference.requests.prefix(observed.requests.count)) == observed.requests
        if let why = testCase.gatewayStricter, prefix, observed.refused {
            line += " — gateway stricter: \(why)"
            return
        }
        Issue.record("framing disagreement. \(line)")
    }
}
