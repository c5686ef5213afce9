import NIOHTTP1

/// Why a request was refused before reaching the upstream, in the shape RFC 6750 asks for.
struct AuthFailure: Error, CustomStringConvertible {
    let status: HTTPResponseStatus
    /// RFC 6750 error code (`invalid_request`, `invalid_token`, `insufficient_scope`), or nil
    /// when no token was offered (the challenge then carries only the realm, RFC 6750 §3.1).
    let errorCode: String?
    let description: String
    /// Stable reason label for metrics and the access log.
    let reason: String
    /// Scopes the route needs, for `insufficient_scope`.
    let scope: String?
    /// The client id of a token whose signature verified (refused later: revoked, bound to a
    /// certificate not presented, lacking a scope); nil when the token did not verify, since an
    /// unverified claim names whatever its sender wants.
    var client: String?
}
