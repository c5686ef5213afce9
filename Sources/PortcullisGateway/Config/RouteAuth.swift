import PortcullisConfig
import PortcullisJOSE

/// How a route authenticates requests.
public enum RouteAuth: Sendable {
    /// Anyone may call the route; no identity is forwarded (client-supplied identity headers are still removed).
    case none
    /// A valid bearer JWT is required.
    case jwt(JWTRouteAuth)

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        let typeNode = try map.required("type")
        switch try typeNode.string() {
        case "none":
            try map.finish()
            self = .none
        case "jwt":
            var auth = JWTRouteAuth()
            if let v = map.optional("issuers") { auth.issuers = try v.stringList() }
            if let v = map.optional("scopes") { auth.scopes = try ScopeRequirement(node: v) }
            if let v = map.optional("claims") { auth.claims = try v.sequence().map(ClaimRule.init(node:)) }
            try map.finish()
            self = .jwt(auth)
        case let other:
            throw typeNode.error("auth type must be 'none' or 'jwt', got '\(other)'")
        }
    }
}
