import PortcullisJOSE

/// Requirements on a route's bearer token beyond a valid signature and claims.
public struct JWTRouteAuth: Sendable {
    /// Names of the issuers accepted on this route; nil accepts every configured issuer.
    public var issuers: [String]?
    public var scopes: ScopeRequirement?
    public var claims: [ClaimRule] = []
}
