import NIOCore
import NIOHTTP1
import Synchronization
import PortcullisCluster
import PortcullisJOSE

/// `X-Request-Id`: a well-formed incoming id is kept so traces join up; anything else is replaced.
enum RequestID {
    static func accept(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count) else { return nil }
        let ok = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
        }
        return ok ? value : nil
    }

    /// 32 hex digits: a random per-process prefix and a counter started at a random value. Unique
    /// and unguessable enough for correlation; not a secret, so no system call per request.
    static func generate() -> String {
        let sequence = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return String(unsafeUninitializedCapacity: 32) { buffer in
            writeHex(processPrefix, into: buffer, at: 0)
            writeHex(sequence, into: buffer, at: 16)
            return 32
        }
    }

    private static let processPrefix = UInt64.random(in: .min ... .max)
    private static let counter = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    private static func writeHex(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { table in
            for index in 0..<16 {
                buffer[offset + index] = table[Int((value >> (60 - 4 * UInt64(index))) & 0xF)]
            }
        }
    }
}

/// Request-target checks done before routing, so a prefix match cannot be escaped.
enum RequestPath {
    /// The path of an origin-form target (`/a/b?q`), or nil for other forms and for paths with
    /// dot segments (`/api/../admin`), raw or percent-encoded, or an encoded slash: an upstream
    /// that normalizes them would otherwise serve a different route than the one the gateway checked.
    static func validate(_ uri: String) -> Substring? {
        let utf8 = uri.utf8
        guard utf8.first == UInt8(ascii: "/") else { return nil }
        // One pass over the bytes: the path ends at `?` or `#`; within it, count the dots of the
        // current segment (a `%2e` counts as a dot) and refuse `.`/`..` segments, `%2f`, `%5c`, `\`.
        var index = utf8.startIndex
        var dots = 0
        var other = false
        func segmentIsDotted() -> Bool { !other && (dots == 1 || dots == 2) }
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#") { break }
            switch byte {
            case UInt8(ascii: "/"):
                if segmentIsDotted() { return nil }
                dots = 0
                other = false
            case UInt8(ascii: "."):
                dots += 1
            case UInt8(ascii: "\\"):
                return nil
            case UInt8(ascii: "%"):
                let first = utf8.index(after: index)
                guard first != utf8.endIndex else { return nil }
                let second = utf8.index(after: first)
                guard second != utf8.endIndex else { return nil }
                let high = utf8[first], low = utf8[second] | 0x20
                if high == UInt8(ascii: "2") && low == UInt8(ascii: "e") {
                    dots += 1
                } else if (high == UInt8(ascii: "2") && low == UInt8(ascii: "f")) || (high == UInt8(ascii: "5") && low == UInt8(ascii: "c")) {
                    return nil
                } else {
                    other = true
                }
                index = second
            default:
                other = true
            }
            index = utf8.index(after: index)
        }
        if segmentIsDotted() { return nil }
        return uri[..<index]
    }

    /// The Host header without its port, lower-cased.
    static func host(_ headers: HTTPHeaders) -> String? {
        guard let host = headers.first(name: "host"), !host.isEmpty else { return nil }
        // Bytes, not Characters: `[v6]:port` keeps what is inside the brackets, `name:port` what is
        // before the colon. Lower-casing allocates only when there is an upper-case letter.
        let utf8 = host.utf8
        let name: Substring.UTF8View
        if utf8.first == UInt8(ascii: "[") {
            let inner = utf8.dropFirst()
            name = inner[..<(inner.firstIndex(of: UInt8(ascii: "]")) ?? inner.endIndex)]
        } else {
            name = utf8[..<(utf8.firstIndex(of: UInt8(ascii: ":")) ?? utf8.endIndex)]
        }
        let text = Substring(name)
        if text.isEmpty { return nil }
        return name.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? text.lowercased() : String(text)
    }
}

/// What the request path needs from a request's headers, found in one pass over them rather than
/// one `first(name:)` scan per question.
struct RequestHeadFacts {
    /// The first `X-Request-Id`.
    var requestID: String?
    /// The first `Content-Length`, when it parses (NIO's decoder already refused conflicting ones).
    var contentLength: Int?
    var hasTransferEncoding = false
    /// `Expect: 100-continue`.
    var expectsContinue = false

    init(_ headers: HTTPHeaders) {
        for (name, value) in headers {
            switch name.utf8.count {
            case 12 where requestID == nil && HeaderNameSet.matches(name, "x-request-id"):
                requestID = value
            case 14 where contentLength == nil && HeaderNameSet.matches(name, "content-length"):
                contentLength = Int(value)
            case 17 where HeaderNameSet.matches(name, "transfer-encoding"):
                hasTransferEncoding = true
            case 6 where HeaderNameSet.matches(name, "expect"):
                expectsContinue = expectsContinue || HeaderNameSet.matches(value, "100-continue")
            default:
                break
            }
        }
    }

    /// Whether a body follows the head.
    var hasBody: Bool { hasTransferEncoding || (contentLength ?? 0) > 0 }
}

/// The string a rate-limit policy counts by. When the token lacks the claim (or the route is
/// unauthenticated) the client IP stands in, so requests are never left unlimited.
enum RateLimitKey {
    static func value(for key: RateLimitPolicy.Key, route: String, identity: VerifiedToken?, headers: HTTPHeaders, clientAddress: String?) -> String {
        let ip = "ip:" + (clientAddress ?? "unknown")
        switch key {
        case .subject: return identity?.subject.map { "sub:" + $0 } ?? ip
        case .clientID: return identity?.clientID.map { "client:" + $0 } ?? ip
        case .ip: return ip
        case .header(let name): return headers.first(name: name).map { "hdr:" + $0 } ?? ip
        case .route: return "route:" + route
        }
    }
}

/// What the access log and the metrics learn about one request.
struct RequestLog {
    let requestID: String
    let method: String
    /// The request target as received; only its path is logged.
    let target: String
    let start: NIODeadline
    var route: String?
    var status = 0
    var subject: String?
    var reason: String?
    var upstream: String?

    init(requestID: String, method: String, target: String, start: NIODeadline) {
        self.requestID = requestID
        self.method = method
        self.target = target
        self.start = start
    }

    /// The query string is left out of the log: it may carry credentials. (Cut when a line is
    /// written, not per request: the access log is often off.)
    var path: String { String(target.prefix { $0 != "?" }) }
}
