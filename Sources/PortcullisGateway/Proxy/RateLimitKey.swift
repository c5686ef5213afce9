import Crypto
import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE

/// The string a rate-limit policy counts by: `sub:ISSUER/SUBJECT`, `client:ISSUER/CLIENT_ID`
/// (ISSUER the issuer's config name), `ip:…`, `hdr:…` or `route:…`. When the token lacks the claim (or the route is
/// unauthenticated) the client IP stands in, so requests are never left unlimited. The parts a
/// client chooses are kept small: an IPv6 address counts by its `/ipv6_prefix` network (one
/// client holds a whole /64), and a header value longer than `maxHeaderValueBytes` by its SHA-256.
/// How many keys a policy holds is bounded separately (`RateLimitPolicy.maxKeys`).
enum RateLimitKey {
    static let maxHeaderValueBytes = 64

    static func value(for policy: RateLimitPolicy, route: String, identity: VerifiedToken?, headers: HTTPHeaders, clientAddress: String?) -> String {
        switch policy.key {
        // Subjects and client ids are an issuer's names: the issuer (its config name) is part of the
        // key, so a token of another issuer naming the same client cannot spend this one's budget.
        case .subject: return identity.flatMap { token in token.subject.map { "sub:" + exact(token.issuerName + "/" + $0) } } ?? ip(clientAddress, policy: policy)
        case .clientID: return identity.flatMap { token in token.clientID.map { "client:" + exact(token.issuerName + "/" + $0) } } ?? ip(clientAddress, policy: policy)
        case .ip: return ip(clientAddress, policy: policy)
        case .header(let name): return headers.first(name: name).map { "hdr:" + exact(bounded($0)) } ?? ip(clientAddress, policy: policy)
        case .route: return "route:" + route
        }
    }

    /// The client's own address key, whatever the policy counts by: it picks the overflow key a
    /// new key shares while the policy is full. An IPv4 client by its address; an IPv6 client by
    /// its /48 (or the policy's shorter prefix), the block one subscriber or site commonly holds,
    /// so that one does not hold a group per /64 it has.
    static func client(_ address: String?, policy: RateLimitPolicy) -> String {
        ip(address, prefix: min(48, policy.ipv6Prefix))
    }

    /// Whether `name` — lowercase, as a policy's `header:` key is parsed — appears more than once
    /// in `headers` (a header-keyed policy refuses that). With `underscoresAsDashes` (the listener
    /// forwards names with `_`), `X_Api_Key` and `X.Api.Key` count as `x-api-key`: CGI-style
    /// upstreams may read them as one (`AmbiguousFieldName`), and `X-Api-Key: junk` beside
    /// `X_Api_Key: real` would otherwise not count as repeated.
    static func isRepeated(_ name: String, in headers: HTTPHeaders, underscoresAsDashes: Bool) -> Bool {
        var seen = false
        for (field, _) in headers where sameName(field, name, underscoresAsDashes: underscoresAsDashes) {
            if seen { return true }
            seen = true
        }
        return false
    }

    private static func sameName(_ field: String, _ lowercase: String, underscoresAsDashes: Bool) -> Bool {
        guard field.utf8.count == lowercase.utf8.count else { return false }
        for (byte, expected) in zip(field.utf8, lowercase.utf8) {
            var folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
            var wanted = expected
            // Both sides read as a CGI-style upstream may: a policy may name `x_api_key` too.
            if underscoresAsDashes, !AmbiguousFieldName.isPlain(folded) { folded = UInt8(ascii: "-") }
            if underscoresAsDashes, !AmbiguousFieldName.isPlain(wanted) { wanted = UInt8(ascii: "-") }
            if folded != wanted { return false }
        }
        return true
    }

    private static func ip(_ address: String?, policy: RateLimitPolicy) -> String {
        ip(address, prefix: policy.ipv6Prefix)
    }

    private static func ip(_ address: String?, prefix: Int) -> String {
        guard let address else { return "ip:unknown" }
        return "ip:" + ClientNetwork.key(of: address, ipv6Prefix: prefix)
    }

    /// `value` in ASCII alone: every byte past ASCII, and `%`, as `%XX`. The limiters key their
    /// maps by `String`, which compares by Unicode canonical equivalence: a subject spelled with
    /// the Kelvin sign would spend the budget of the one spelled with `K`. ASCII text has no
    /// equivalent other spelling, and an ASCII value (nearly all) is kept as it is.
    static func exact(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 >= 0x80 || $0 == UInt8(ascii: "%") }) else { return value }
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count * 2)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in value.utf8 {
            if byte >= 0x80 || byte == UInt8(ascii: "%") {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func bounded(_ value: String) -> String {
        guard value.utf8.count > maxHeaderValueBytes else { return value }
        return "sha256:" + SHA256.hash(data: Array(value.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }
}
