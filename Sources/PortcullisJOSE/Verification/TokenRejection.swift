/// Why a token was refused. The raw values are stable codes for logs, metrics labels and the
/// `portcullis token verify` output; do not rename them.
public enum RejectionReason: String, Sendable, CaseIterable {
    /// Not three strict base64url segments, or a header/claims part that is not a JSON object.
    case malformed
    /// Longer than the issuer's `max_token_bytes` (or every issuer's, before `iss` is known).
    case tokenTooLarge = "token_too_large"
    /// JWE (five segments) or the JWS JSON serialization.
    case unsupportedSerialization = "unsupported_serialization"
    /// A header parameter that changes how the token must be processed: `crit`, `zip`,
    /// `b64`, or `cty: JWT` (nested tokens).
    case unsupportedHeader = "unsupported_header"
    /// `alg` is `none`, unknown, not in the issuer's allowlist, or not the key's algorithm.
    case algNotAllowed = "alg_not_allowed"
    /// `iss` is missing or names no configured issuer.
    case unknownIssuer = "unknown_issuer"
    /// No key with the token's `kid` (or no `kid` and not exactly one key).
    case unknownKeyID = "unknown_kid"
    /// The token's `kid` is revoked cluster-wide.
    case keyRevoked = "key_revoked"
    /// The signature does not verify with the selected key.
    case badSignature = "bad_signature"
    /// `exp` has passed, the issuer's leeway included.
    case expired
    /// `nbf` is later than now plus the issuer's leeway.
    case notYetValid = "not_yet_valid"
    /// `iat` is later than now plus the issuer's `iat_leeway_seconds`.
    case issuedInFuture = "issued_in_future"
    /// `iss` names a configured issuer that this route does not accept.
    case wrongIssuer = "wrong_issuer"
    /// No `aud` value is one of the issuer's configured audiences.
    case wrongAudience = "wrong_audience"
    /// A required claim (`iss`, `exp` or `aud`) is absent.
    case missingClaim = "missing_claim"
    /// A registered claim with the wrong type (`exp` as a string, `aud` with a number, ...).
    case invalidClaim = "invalid_claim"
    /// The `typ` header is present but not `JWT` or `at+jwt` (either with `application/`, any case).
    case invalidType = "invalid_typ"
    /// The issuer's key set is not loaded (never fetched, or dropped after `max_stale`).
    case keysNotLoaded = "keys_not_loaded"
}

/// A refused token: a stable ``reason`` code and a human ``detail``. The detail is safe to send
/// to the client: it never echoes the token or any value taken from it.
public struct TokenRejection: Error, Sendable, CustomStringConvertible, Equatable {
    /// The stable code.
    public let reason: RejectionReason
    /// What was wrong, in words; never holds the token or a value taken from it.
    public let detail: String

    /// A rejection with this code and detail.
    public init(_ reason: RejectionReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    /// `code: detail`, with the reason's raw value as the code.
    public var description: String { "\(reason.rawValue): \(detail)" }
}
