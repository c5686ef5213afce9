import PortcullisJOSE

/// A route's JWT requirements, resolved once per route table.
struct CompiledJWTAuth: Sendable {
    let allowedIssuers: Set<String>?
    let scopes: ScopeRequirement?
    let claims: [ClaimRule]
}
