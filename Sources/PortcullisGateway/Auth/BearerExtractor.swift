import NIOHTTP1

/// What the `Authorization` header carried.
enum BearerCredential: Equatable {
    /// No `Authorization` header, or one with another scheme (Basic, …): no bearer token was offered.
    case absent
    /// More than one `Authorization` header: ambiguous, rejected as `invalid_request`.
    case ambiguous
    /// `Bearer` with no token after it, or run into one (`Bearerxyz`).
    case malformed
    /// The credential after `Bearer `, not yet checked against RFC 6750's b64token syntax: a token
    /// the verifier accepts is a JWS, whose alphabet lies inside b64token's, so `Authenticator`
    /// runs `isB64Token` only on a token that failed verification, to name the failure.
    case token(Substring)
}

/// Pulls the bearer token out of a request (RFC 6750 §2.1). Only the header form is accepted: the
/// query and form-body forms leak tokens into logs and are not supported.
enum BearerExtractor {
    /// Whether the request target's query has an `access_token` parameter (RFC 6750 §2.3) — its
    /// name percent-decoded and read as PHP reads names into `$_GET` (`.`, space and `[` as `_`,
    /// `access_token[…]` an array of that name), in any letter case. The gateway does not accept
    /// a token there, but an upstream may: forwarded beside the token the gateway checked, it
    /// would have the upstream act for whoever that second token names. RFC 6750 §3.1 answers a
    /// request using more than one method with `invalid_request`.
    static func queryNamesAccessToken(_ uri: String) -> Bool {
        guard let mark = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return false }
        // Most queries name no token: only one with an escape or a "token" in some letter case
        // is read pair by pair.
        guard mightNameToken(uri.utf8[uri.utf8.index(after: mark)...]) else { return false }
        let bytes = Array(uri.utf8)
        let query = bytes[(bytes.firstIndex(of: UInt8(ascii: "?"))! + 1)...]
        let target = Array("access_token".utf8)
        for pair in query.split(separator: UInt8(ascii: "&")) {
            let rawName = pair.prefix { $0 != UInt8(ascii: "=") }
            guard rawName.count >= target.count else { continue }
            var name = percentDecoded(rawName).prefix { $0 != 0 }.drop { $0 == UInt8(ascii: " ") }
                .map { byte -> UInt8 in
                    let lower = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
                    return lower == UInt8(ascii: ".") || lower == UInt8(ascii: " ") ? UInt8(ascii: "_") : lower
                }
            if let bracket = name.firstIndex(of: UInt8(ascii: "[")), bracket > 0 { name = Array(name[..<bracket]) }
            if name == target { return true }
        }
        return false
    }

    private static func mightNameToken(_ query: Substring.UTF8View) -> Bool {
        var matched = 0
        let word = Array("token".utf8)
        for byte in query {
            if byte == UInt8(ascii: "%") { return true }
            let lower = byte | 0x20
            if lower == word[matched] {
                matched += 1
                if matched == word.count { return true }
            } else {
                matched = lower == word[0] ? 1 : 0
            }
        }
        return false
    }

    /// `bytes` with `%XX` escapes decoded (`+` as a space, as form names are read); a malformed
    /// escape is kept as it is.
    private static func percentDecoded(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%"), index + 2 < bytes.endIndex, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) {
                out.append(high << 4 | low)
                index += 3
                continue
            }
            out.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            index += 1
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    static func extract(from headers: HTTPHeaders) -> BearerCredential {
        var found: String?
        for (name, value) in headers where HeaderNameSet.matches(name, "authorization") {
            if found != nil { return .ambiguous }
            found = value
        }
        guard let value = found else { return .absent }
        return parse(value)
    }

    static func parse(_ value: String) -> BearerCredential {
        // On bytes: Character iteration (grapheme breaking) showed in request-path profiles.
        let utf8 = value.utf8
        guard utf8.count >= 6 else { return .absent }
        let schemeEnd = utf8.index(utf8.startIndex, offsetBy: 6)
        guard HeaderNameSet.equalsIgnoringASCIICase(utf8[..<schemeEnd], "bearer".utf8) else { return .absent }
        var rest = utf8[schemeEnd...]
        guard rest.first == UInt8(ascii: " ") else {
            // "Bearer" alone or "Bearerxyz": a bearer attempt without a usable token.
            return .malformed
        }
        while rest.first == UInt8(ascii: " ") { rest = rest.dropFirst() }
        while rest.last == UInt8(ascii: " ") { rest = rest.dropLast() }
        guard !rest.isEmpty else { return .malformed }
        return .token(Substring(rest))
    }

    /// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    static func isB64Token(_ text: Substring) -> Bool {
        // One pass over contiguous bytes (tokens are ~1 KB).
        text.utf8.withContiguousStorageIfAvailable(isB64Token(bytes:)) ?? isB64Token(bytes: Array(text.utf8))
    }

    private static let allowed: [Bool] = (0..<256).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
            true
        default:
            false
        }
    }

    private static func isB64Token(bytes: some RandomAccessCollection<UInt8>) -> Bool {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[bytes.index(before: end)] == UInt8(ascii: "=") { end = bytes.index(before: end) }
        guard end > bytes.startIndex else { return false }
        return allowed.withUnsafeBufferPointer { table in
            bytes[bytes.startIndex..<end].allSatisfy { table[Int($0)] }
        }
    }
}
