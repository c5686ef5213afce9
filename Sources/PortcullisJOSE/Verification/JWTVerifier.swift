import Synchronization

private let verifierIDs = Atomic<UInt64>(1)

/// Verifies JWS Compact JWTs against the configured issuers (RFC 7515, 7519, 8725).
///
/// Synchronous and safe to call from any thread, including NIO event loops: no I/O, no `async`,
/// no global lock. Per call it takes one key-store stripe lock (see ``KeySetStore``) and, with a
/// cache, one cache-shard lock.
///
/// Nothing in an unverified token is trusted: `iss` only picks whose keys to try, `kid` is only
/// an exact lookup key into that issuer's configured set, and `jwk`/`jku`/`x5u`/`x5c` are never
/// consulted.
public final class JWTVerifier: Sendable {
    struct IssuerRuntime: Sendable {
        let config: IssuerConfig
        let algorithmMask: UInt32
    }

    private let issuers: [IssuerRuntime]
    private let keys: KeySetStore
    private let cache: VerifiedTokenCache?
    private let now: @Sendable () -> Int64
    private let onUnknownKeyID: (@Sendable (_ issuerName: String, _ kid: String) -> Void)?
    private let maxTokenBytes: Int
    private let id: UInt64

    /// - Parameters:
    ///   - issuers: every issuer this verifier knows; `iss` must equal one of them exactly.
    ///   - keys: where the issuers' current key sets are read from on every call.
    ///   - cache: verified tokens to reuse; nil to verify every call.
    ///   - now: the clock, in Unix seconds.
    ///   - onUnknownKeyID: told (synchronously, on the verifying thread; keep it non-blocking) when a
    ///     token names a `kid` its issuer's set lacks, e.g. `KeySetLoader.requestRefetch`.
    public init(issuers: [IssuerConfig], keys: KeySetStore, cache: VerifiedTokenCache?,
                now: @escaping @Sendable () -> Int64 = { Int64(UnixClock.seconds()) },
                onUnknownKeyID: (@Sendable (_ issuerName: String, _ kid: String) -> Void)? = nil) {
        self.issuers = issuers.map { config in
            IssuerRuntime(config: config, algorithmMask: config.algorithms.reduce(0) { $0 | Self.bit($1) })
        }
        self.keys = keys
        self.cache = cache
        self.now = now
        self.onUnknownKeyID = onUnknownKeyID
        self.maxTokenBytes = issuers.map(\.maxTokenBytes).max() ?? IssuerConfig.defaultMaxTokenBytes
        self.id = verifierIDs.wrappingAdd(1, ordering: .relaxed).oldValue
        keys.expectIssuers(issuers.map(\.name))
    }

    /// Verifies a token given as text (e.g. the part of an `Authorization` header after `Bearer `).
    /// - Parameter allowedIssuers: names of the issuers this route accepts (nil: all configured).
    public func verify(_ token: Substring, allowedIssuers: Set<String>? = nil) -> Result<VerifiedToken, TokenRejection> {
        if let result = token.utf8.withContiguousStorageIfAvailable({ verify(UnsafeRawBufferPointer($0), allowedIssuers: allowedIssuers) }) {
            return result
        }
        var copy = String(token)
        return copy.withUTF8 { verify(UnsafeRawBufferPointer($0), allowedIssuers: allowedIssuers) }
    }

    /// Verifies a token given as text.
    public func verify(_ token: String, allowedIssuers: Set<String>? = nil) -> Result<VerifiedToken, TokenRejection> {
        verify(token[...], allowedIssuers: allowedIssuers)
    }

    /// Verifies a token given as bytes.
    public func verify(_ token: [UInt8], allowedIssuers: Set<String>? = nil) -> Result<VerifiedToken, TokenRejection> {
        token.withUnsafeBytes { verify($0, allowedIssuers: allowedIssuers) }
    }

    /// Verifies a token in place, e.g. straight from the request head's bytes; the bytes are only
    /// read during the call (a cache insert copies them).
    public func verify(_ token: UnsafeRawBufferPointer, allowedIssuers: Set<String>? = nil) -> Result<VerifiedToken, TokenRejection> {
        guard !token.isEmpty else { return .failure(TokenRejection(.malformed, "empty token")) }
        guard token.count <= maxTokenBytes else {
            return .failure(TokenRejection(.tokenTooLarge, "token longer than \(maxTokenBytes) bytes"))
        }
        let now = self.now()
        var hash: UInt64 = 0
        if let cache {
            hash = VerifiedTokenCache.hash(token)
            let keys = self.keys
            let hit = cache.lookup(token, hash: hash, now: now, verifierID: id, generation: keys.generation) { key, cached in
                let snapshot = keys.snapshot()
                return snapshot.stillTrusts(key, issuerName: cached.issuerName, issuer: cached.issuer, tokenHasKeyID: cached.keyID != nil) ? snapshot.generation : nil
            }
            if let hit {
                if let allowedIssuers, !allowedIssuers.contains(hit.issuerName) {
                    return .failure(TokenRejection(.wrongIssuer, "the token's issuer is not accepted here"))
                }
                return .success(hit)
            }
        }
        switch verifyUncached(token, allowedIssuers: allowedIssuers, now: now) {
        case .failure(let rejection):
            return .failure(rejection)
        case .success(let verified):
            if let cache, now < verified.token.expiresAt {
                cache.insert(token, hash: hash, result: verified.token, key: verified.key, verifierID: id, generation: verified.generation)
            }
            return .success(verified.token)
        }
    }

    // MARK: Uncached path

    private struct Verified {
        let token: VerifiedToken
        let key: VerificationKey
        let generation: UInt64
    }

    private static let allowedTypes = ["jwt", "at+jwt", "application/jwt", "application/at+jwt"]

    private func verifyUncached(_ token: UnsafeRawBufferPointer, allowedIssuers: Set<String>?, now: Int64) -> Result<Verified, TokenRejection> {
        // Structure: exactly three segments.
        if token[0] == UInt8(ascii: "{") {
            return .failure(TokenRejection(.unsupportedSerialization, "the JWS JSON serialization is not accepted; send a compact JWS"))
        }
        var firstDot = -1, secondDot = -1, dots = 0
        for index in 0..<token.count where token[index] == UInt8(ascii: ".") {
            dots += 1
            if dots == 1 { firstDot = index } else if dots == 2 { secondDot = index }
        }
        guard dots == 2 else {
            if dots == 4 { return .failure(TokenRejection(.unsupportedSerialization, "encrypted tokens (JWE) are not accepted")) }
            return .failure(TokenRejection(.malformed, "a JWS compact token has exactly three dot-separated parts"))
        }

        // Header.
        guard let headerBytes = Base64URL.decode(UnsafeRawBufferPointer(rebasing: token[0..<firstDot])) else {
            return .failure(TokenRejection(.malformed, "header is not strict unpadded base64url"))
        }
        let header: [String: JSONValue]
        switch parseObject(headerBytes) {
        case .success(let members): header = members
        case .failure(let error): return .failure(TokenRejection(.malformed, "header: \(error)"))
        }
        guard let algValue = header["alg"] else { return .failure(TokenRejection(.malformed, "header has no alg")) }
        guard let algText = algValue.stringValue else { return .failure(TokenRejection(.malformed, "header alg is not a string")) }
        if algText.utf8.count == 4, algText.lowercased() == "none" {
            return .failure(TokenRejection(.algNotAllowed, "unsigned tokens (alg none) are never accepted"))
        }
        guard let algorithm = JWSAlgorithm(exactly: algText) else {
            return .failure(TokenRejection(.algNotAllowed, "unsupported alg"))
        }
        if header["crit"] != nil {
            return .failure(TokenRejection(.unsupportedHeader, "no critical header extensions (crit) are supported"))
        }
        if header["zip"] != nil {
            return .failure(TokenRejection(.unsupportedHeader, "compressed tokens (zip) are not accepted"))
        }
        if let b64 = header["b64"], b64 != .bool(true) {
            return .failure(TokenRejection(.unsupportedHeader, "unencoded payloads (b64) are not accepted"))
        }
        if let typ = header["typ"] {
            guard let text = typ.stringValue, Self.allowedTypes.contains(where: { Self.asciiCaseInsensitiveEquals(text, $0) }) else {
                return .failure(TokenRejection(.invalidType, "typ must be JWT or at+jwt"))
            }
        }
        if let cty = header["cty"]?.stringValue, ["jwt", "application/jwt"].contains(cty.lowercased()) {
            return .failure(TokenRejection(.unsupportedHeader, "nested tokens (cty JWT) are not accepted"))
        }
        var keyID: String?
        if let kidValue = header["kid"] {
            guard let kid = kidValue.stringValue else { return .failure(TokenRejection(.malformed, "header kid is not a string")) }
            keyID = kid
        }

        // Claims, parsed before the signature check only to pick the issuer; nothing is trusted yet.
        guard let claimBytes = Base64URL.decode(UnsafeRawBufferPointer(rebasing: token[(firstDot + 1)..<secondDot])) else {
            return .failure(TokenRejection(.malformed, "claims are not strict unpadded base64url"))
        }
        let claims: [String: JSONValue]
        switch parseObject(claimBytes) {
        case .success(let members): claims = members
        case .failure(let error): return .failure(TokenRejection(.malformed, "claims: \(error)"))
        }
        guard let issValue = claims["iss"] else { return .failure(TokenRejection(.missingClaim, "the iss claim is required")) }
        guard let iss = issValue.stringValue else { return .failure(TokenRejection(.invalidClaim, "iss is not a string")) }
        guard let issuer = issuers.first(where: { ExactString.equal($0.config.issuer, iss) }) else {
            return .failure(TokenRejection(.unknownIssuer, "the token's issuer is not configured"))
        }
        let config = issuer.config
        if let allowedIssuers, !allowedIssuers.contains(config.name) {
            return .failure(TokenRejection(.wrongIssuer, "the token's issuer is not accepted here"))
        }
        guard token.count <= config.maxTokenBytes else {
            return .failure(TokenRejection(.tokenTooLarge, "token longer than \(config.maxTokenBytes) bytes"))
        }
        guard issuer.algorithmMask & Self.bit(algorithm) != 0 else {
            return .failure(TokenRejection(.algNotAllowed, "\(algorithm.rawValue) is not allowed for this issuer"))
        }

        // Key: only from the issuer's configured set, by exact kid.
        let snapshot = keys.snapshot()
        guard let keySet = snapshot.keySet(issuerName: config.name) else {
            return .failure(TokenRejection(.keysNotLoaded, "the issuer's keys are not loaded"))
        }
        if let keyID, snapshot.isRevoked(kid: keyID, issuer: config.issuer) {
            return .failure(TokenRejection(.keyRevoked, "the signing key has been revoked"))
        }
        let key: VerificationKey
        switch keySet.lookup(keyID: keyID, algorithm: algorithm) {
        case .found(let found):
            key = found
        case .unknownKeyID:
            if let keyID { onUnknownKeyID?(config.name, keyID) }
            return .failure(TokenRejection(.unknownKeyID, "no key with this kid"))
        case .ambiguousWithoutKeyID(let count):
            return .failure(TokenRejection(.unknownKeyID, "the token has no kid and the issuer has \(count) keys"))
        case .algorithmMismatch(let expected):
            return .failure(TokenRejection(.algNotAllowed, "the key is for \(expected.rawValue), the token says \(algorithm.rawValue)"))
        }
        if let kid = key.keyID, snapshot.isRevoked(kid: kid, issuer: config.issuer) {
            return .failure(TokenRejection(.keyRevoked, "the signing key has been revoked"))
        }

        // Signature over the ASCII bytes of `header.payload`.
        guard let signature = Base64URL.decode(UnsafeRawBufferPointer(rebasing: token[(secondDot + 1)...])) else {
            return .failure(TokenRejection(.malformed, "signature is not strict unpadded base64url"))
        }
        guard key.isValidSignature(signature, signingInput: UnsafeRawBufferPointer(rebasing: token[0..<secondDot])) else {
            return .failure(TokenRejection(.badSignature, "signature does not verify"))
        }

        // Claims, now authenticated.
        let leeway = Int64(config.leewaySeconds)
        guard let expValue = claims["exp"] else { return .failure(TokenRejection(.missingClaim, "the exp claim is required")) }
        guard let exp = Self.numericDate(expValue, roundUp: false) else {
            return .failure(TokenRejection(.invalidClaim, "exp is not a NumericDate"))
        }
        guard now - leeway < exp else { return .failure(TokenRejection(.expired, "token expired")) }
        var nbf: Int64?
        if let value = claims["nbf"] {
            guard let date = Self.numericDate(value, roundUp: true) else {
                return .failure(TokenRejection(.invalidClaim, "nbf is not a NumericDate"))
            }
            guard date <= now + leeway else { return .failure(TokenRejection(.notYetValid, "token not valid yet (nbf)")) }
            nbf = date
        }
        var iat: Int64?
        var iatMillis: Int64?
        if let value = claims["iat"] {
            guard let date = Self.numericDate(value, roundUp: true), let millis = Self.numericDateMillis(value) else {
                return .failure(TokenRejection(.invalidClaim, "iat is not a NumericDate"))
            }
            // Its own, small tolerance: how long a token stamped ahead of time can outlive a cut-off.
            guard date <= now + Int64(config.iatLeewaySeconds) else {
                return .failure(TokenRejection(.issuedInFuture, "token issued in the future (iat)"))
            }
            iat = date
            iatMillis = millis
        }
        guard let audValue = claims["aud"] else { return .failure(TokenRejection(.missingClaim, "the aud claim is required")) }
        var audiences: [String] = []
        switch audValue {
        case .string(let single):
            audiences = [single]
        case .array(let items):
            for item in items {
                guard let text = item.stringValue else { return .failure(TokenRejection(.invalidClaim, "aud holds a non-string")) }
                audiences.append(text)
            }
        default:
            return .failure(TokenRejection(.invalidClaim, "aud is neither a string nor an array of strings"))
        }
        guard audiences.contains(where: { aud in config.audiences.contains { ExactString.equal($0, aud) } }) else {
            return .failure(TokenRejection(.wrongAudience, "the token is not for this audience"))
        }

        var strings: [String?] = []
        for name in ["sub", "jti", "client_id", "azp", "sid"] {
            guard let value = claims[name] else { strings.append(nil); continue }
            guard let text = value.stringValue else { return .failure(TokenRejection(.invalidClaim, "\(name) is not a string")) }
            strings.append(text)
        }
        guard let scopes = Self.scopes(claims) else {
            return .failure(TokenRejection(.invalidClaim, "scope must be a space-separated string, scp a string or an array of strings"))
        }

        let verified = VerifiedToken(
            issuerName: config.name, issuer: iss, subject: strings[0], jwtID: strings[1], clientID: strings[2] ?? strings[3],
            audiences: audiences, scopes: scopes, expiresAt: exp, notBefore: nbf, issuedAt: iat, issuedAtMillis: iatMillis,
            keyID: keyID, algorithm: algorithm, claims: .object(claims), leewaySeconds: config.leewaySeconds, sessionID: strings[4],
            keyFingerprint: key.fingerprint)
        return .success(Verified(token: verified, key: key, generation: snapshot.generation))
    }

    /// Compares with a lowercase ASCII constant without allocating.
    static func asciiCaseInsensitiveEquals(_ text: String, _ lowercase: String) -> Bool {
        var other = lowercase.utf8.makeIterator()
        for byte in text.utf8 {
            guard let expected = other.next() else { return false }
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
            if folded != expected { return false }
        }
        return other.next() == nil
    }

    private func parseObject(_ bytes: [UInt8]) -> Result<[String: JSONValue], JSONParseError> {
        do {
            guard case .object(let members) = try JOSEJSONReader.parse(bytes) else {
                return .failure(JSONParseError(offset: 0, message: "not a JSON object"))
            }
            return .success(members)
        } catch {
            return .failure(error)
        }
    }

    /// A NumericDate (RFC 7519 §2): a JSON number of seconds that fits in Int64. Fractions round
    /// toward the stricter side: down for `exp`, up for `nbf`/`iat`.
    static func numericDate(_ value: JSONValue, roundUp: Bool) -> Int64? {
        switch value {
        case .integer(let seconds): return seconds
        case .number(let seconds):
            let rounded = roundUp ? seconds.rounded(.up) : seconds.rounded(.down)
            guard rounded.isFinite, rounded >= -9.223372036854775808e18, rounded < 9.223372036854775808e18 else { return nil }
            return Int64(rounded)
        default: return nil
        }
    }

    /// A NumericDate in Unix milliseconds, rounded down: the earliest instant it can name, which is
    /// what a cut-off must compare (rounding up would let a fractional `iat` pass as later).
    static func numericDateMillis(_ value: JSONValue) -> Int64? {
        switch value {
        case .integer(let seconds):
            let (millis, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            return overflow ? nil : millis
        case .number(let seconds):
            let millis = (seconds * 1000).rounded(.down)
            guard millis.isFinite, millis >= -9.223372036854775808e18, millis < 9.223372036854775808e18 else { return nil }
            return Int64(millis)
        default: return nil
        }
    }

    /// Splits on spaces over the UTF-8 bytes (the generic `split` showed up in profiles).
    static func spaceSeparated(_ text: String) -> [String] {
        var copy = text
        return copy.withUTF8 { bytes in
            var words: [String] = []
            var start = 0
            for index in 0...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: " ") {
                if index > start { words.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)) }
                start = index + 1
            }
            return words
        }
    }

    static func scopes(_ claims: [String: JSONValue]) -> [String]? {
        func split(_ value: JSONValue) -> [String]? {
            switch value {
            case .string(let text): return spaceSeparated(text)
            case .array(let items):
                var result: [String] = []
                for item in items {
                    guard let text = item.stringValue else { return nil }
                    result.append(text)
                }
                return result
            default: return nil
            }
        }
        if let scope = claims["scope"] { return split(scope) }
        if let scp = claims["scp"] { return split(scp) }
        return []
    }

    @inline(__always)
    static func bit(_ algorithm: JWSAlgorithm) -> UInt32 {
        switch algorithm {
        case .RS256: return 1 << 0
        case .RS384: return 1 << 1
        case .RS512: return 1 << 2
        case .PS256: return 1 << 3
        case .PS384: return 1 << 4
        case .PS512: return 1 << 5
        case .ES256: return 1 << 6
        case .ES384: return 1 << 7
        case .EdDSA: return 1 << 8
        case .HS256: return 1 << 9
        case .HS384: return 1 << 10
        case .HS512: return 1 << 11
        }
    }
}
