/// A token whose signature, issuer, audience and times were checked. Revocation (by `jti`,
/// `sub` or client) is not part of this: callers check it on every request.
///
/// A class, immutable: the token cache hands the same one out on every request, and copying a
/// struct of this many fields cost a retain and a release per field each time.
public final class VerifiedToken: Sendable {
    /// The configured issuer's `name`.
    public let issuerName: String
    /// The `iss` claim (equal to the configured issuer).
    public let issuer: String
    /// The `sub` claim, if present.
    public let subject: String?
    /// The `jti` claim, if present.
    public let jwtID: String?
    /// `sid`: the session (sign-in or grant) the token was issued in, which a session revocation names.
    public let sessionID: String?
    /// `client_id`, else `azp`.
    public let clientID: String?
    /// Every `aud` value of the token.
    public let audiences: [String]
    /// From `scope` (space separated), else `scp` (array, or space-separated string).
    public let scopes: [String]
    /// `scopes` as a header carries them (`SpaceSeparatedList`): joined once per verified token
    /// rather than once per request (the token cache hands out the same value).
    public let scopeList: String
    /// `exp` in Unix seconds (a fractional value rounded down).
    public let expiresAt: Int64
    /// `nbf` in Unix seconds (a fractional value rounded up), if present.
    public let notBefore: Int64?
    /// `iat` in Unix seconds (a fractional value rounded up), if present.
    public let issuedAt: Int64?
    /// `iat` in Unix milliseconds, rounded down (a fractional `iat` keeps its fraction): what
    /// subject and client cut-offs compare.
    public let issuedAtMillis: Int64?
    /// The header's `kid`, if present.
    public let keyID: String?
    /// The header's `alg`, which the verifying key is bound to.
    public let algorithm: JWSAlgorithm
    /// The whole claims object, for claim rules and claim-to-header mapping.
    public let claims: JSONValue
    /// What `cnf` binds the token to (RFC 7800, RFC 8705).
    public let confirmation: TokenConfirmation
    /// The seconds past `exp` it was accepted for: its issuer's `leeway_seconds` in the
    /// configuration that verified it, so a connection it opened ends by the same rule.
    public let leewaySeconds: Int
    /// The fingerprint of the key that verified the signature (`VerificationKey.fingerprint`), so
    /// that a long-lived connection can tell when its issuer's set no longer holds that key.
    public let keyFingerprint: [UInt8]?

    /// A token from values already checked; nothing is verified here. `scopeList` and `confirmation`
    /// are derived, and a nil `issuedAtMillis` is `issuedAt` in milliseconds.
    public init(issuerName: String, issuer: String, subject: String?, jwtID: String?, clientID: String?,
                audiences: [String], scopes: [String], expiresAt: Int64, notBefore: Int64?, issuedAt: Int64?,
                issuedAtMillis: Int64? = nil, keyID: String?, algorithm: JWSAlgorithm, claims: JSONValue,
                leewaySeconds: Int = IssuerConfig.defaultLeewaySeconds, sessionID: String? = nil, keyFingerprint: [UInt8]? = nil) {
        self.keyFingerprint = keyFingerprint
        self.issuerName = issuerName
        self.issuer = issuer
        self.subject = subject
        self.jwtID = jwtID
        self.sessionID = sessionID
        self.clientID = clientID
        self.audiences = audiences
        self.scopes = scopes
        self.scopeList = SpaceSeparatedList.encode(scopes)
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.issuedAt = issuedAt
        // Callers without the claim's exact value (tests, benchmarks) get the whole second.
        self.issuedAtMillis = issuedAtMillis ?? issuedAt.flatMap { seconds in
            let (millis, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            return overflow ? nil : millis
        }
        self.keyID = keyID
        self.algorithm = algorithm
        self.claims = claims
        self.confirmation = TokenConfirmation(claims: claims)
        self.leewaySeconds = leewaySeconds
    }
}
