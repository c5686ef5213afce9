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
    /// Whether the request target's query has an `access_token` parameter (RFC 6750 §2.3), its
    /// name read as frameworks read it (`QueryParameterName`). The gateway does not accept a
    /// token there, but an upstream may: forwarded beside the token the gateway checked, it would
    /// have the upstream act for whoever that second token names. RFC 6750 §3.1 answers a request
    /// using more than one method with `invalid_request`.
    static func queryNamesAccessToken(_ uri: String) -> Bool {
        QueryParameterName.contains("access_token", hint: "token", in: uri)
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
