import NIOCore
import NIOHTTP1
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

    /// 128 random bits as 32 hex digits.
    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64, low = generator.next() as UInt64
        let hex = String(high, radix: 16), hex2 = String(low, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + String(repeating: "0", count: 16 - hex2.count) + hex2
    }
}

/// Request-target checks done before routing, so a prefix match cannot be escaped.
enum RequestPath {
    /// The path of an origin-form target (`/a/b?q`), or nil for other forms and for paths with
    /// dot segments (`/api/../admin`), raw or percent-encoded, or an encoded slash: an upstream
    /// that normalizes them would otherwise serve a different route than the one the gateway checked.
    static func validate(_ uri: String) -> Substring? {
        guard uri.utf8.first == UInt8(ascii: "/") else { return nil }
        let path = uri[..<(uri.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? uri.endIndex)]
        let lowered = path.lowercased()
        if lowered.contains("%2f") || lowered.contains("%5c") || lowered.contains("\\") { return nil }
        let decodedDots = lowered.replacingOccurrences(of: "%2e", with: ".")
        for segment in decodedDots.split(separator: "/", omittingEmptySubsequences: false) where segment == "." || segment == ".." {
            return nil
        }
        return path
    }

    /// The Host header without its port, lower-cased.
    static func host(_ headers: HTTPHeaders) -> String? {
        guard let host = headers.first(name: "host"), !host.isEmpty else { return nil }
        if host.hasPrefix("[") {
            return host.split(separator: "]").first.map { String($0.dropFirst()).lowercased() }
        }
        return (host.split(separator: ":").first.map(String.init) ?? host).lowercased()
    }
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
    let path: String
    let start: NIODeadline
    var route: String?
    var status = 0
    var subject: String?
    var reason: String?
    var upstream: String?

    init(requestID: String, method: String, path: String, start: NIODeadline) {
        self.requestID = requestID
        self.method = method
        self.path = path
        self.start = start
    }
}
