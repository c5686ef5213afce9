import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE

/// Extract → verify (signature, claims; cached) → revocation (never cached) → scopes and claim rules.
/// Synchronous, lock-free apart from the token cache's shard: runs on the event loop.
struct Authenticator: Sendable {
    let verifier: JWTVerifier
    let revocation: (any RevocationCheck)?

    /// `clientCertificate` gives the SHA-256 of the connection's verified client certificate; it is
    /// asked only for a token bound to one (RFC 8705).
    func authenticate(_ headers: HTTPHeaders, policy: CompiledJWTAuth,
                      clientCertificate: () -> [UInt8]? = { nil }) -> Result<VerifiedToken, AuthFailure> {
        let token: Substring
        switch BearerExtractor.extract(from: headers) {
        case .absent:
            return .failure(AuthFailure(status: .unauthorized, errorCode: nil, description: "a bearer token is required",
                                        reason: "missing_token", scope: nil))
        case .ambiguous:
            return .failure(AuthFailure(status: .badRequest, errorCode: "invalid_request", description: "more than one Authorization header",
                                        reason: "ambiguous_authorization", scope: nil))
        case .malformed:
            return .failure(Self.notB64Token)
        case .token(let value):
            token = value
        }

        let verified: VerifiedToken
        switch verifier.verify(token, allowedIssuers: policy.allowedIssuers) {
        case .success(let value):
            verified = value
        case .failure(let rejection):
            // Checked only here: a verified token is a JWS, so it is a b64token (a scan of ~1 KB per
            // request that showed in profiles).
            guard BearerExtractor.isB64Token(token) else { return .failure(Self.notB64Token) }
            return .failure(AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: rejection.detail,
                                        reason: rejection.reason.rawValue, scope: nil))
        }

        func refuse(_ failure: AuthFailure) -> Result<VerifiedToken, AuthFailure> {
            var failure = failure
            failure.client = verified.clientID ?? "none"
            return .failure(failure)
        }

        switch revocation?.check(verified) ?? .allowed {
        case .allowed:
            break
        case .revoked(let detail):
            return refuse(AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: detail,
                                      reason: "revoked", scope: nil))
        case .stale(let detail):
            return refuse(AuthFailure(status: .serviceUnavailable, errorCode: "temporarily_unavailable", description: detail,
                                      reason: "revocation_state_stale", scope: nil))
        }

        switch verified.confirmation {
        case .none:
            break
        case .certificate(let bound):
            guard let presented = clientCertificate(), Self.constantTimeEquals(presented, bound) else {
                return refuse(AuthFailure(status: .unauthorized, errorCode: "invalid_token",
                                          description: "the token is bound to a client certificate (cnf x5t#S256) this connection did not present",
                                          reason: "certificate_binding", scope: nil))
            }
        case .unsupported(let detail):
            return refuse(AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: detail,
                                      reason: "unsupported_confirmation", scope: nil))
        }

        if let scopes = policy.scopes, !scopes.isSatisfied(by: verified) {
            return refuse(AuthFailure(status: .forbidden, errorCode: "insufficient_scope",
                                      description: "the token lacks the scope this route requires",
                                      reason: "insufficient_scope", scope: scopes.scopes.joined(separator: " ")))
        }
        for rule in policy.claims where !rule.matches(verified) {
            return refuse(AuthFailure(status: .forbidden, errorCode: "insufficient_scope",
                                      description: "the token does not satisfy the route's claim rule: \(rule.description)",
                                      reason: "claim_rule", scope: nil))
        }
        return .success(verified)
    }

    private static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    private static let notB64Token = AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: "the bearer token is not a valid b64token",
                                                 reason: RejectionReason.malformed.rawValue, scope: nil)
}
