import PortcullisConfig

/// One claim forwarded as a request header. Array claims are a `SpaceSeparatedList`.
public struct IdentityHeader: Sendable, Hashable {
    public var claim: String
    public var header: String

    public static let defaults: [IdentityHeader] = [
        IdentityHeader(claim: "sub", header: "X-Auth-Subject"),
        IdentityHeader(claim: "scope", header: "X-Auth-Scopes"),
        IdentityHeader(claim: "iss", header: "X-Auth-Issuer"),
        IdentityHeader(claim: "client_id", header: "X-Auth-Client-Id"),
    ]

    /// Fields the gateway writes on every forwarded request.
    private static let gatewayStated: Set<String> = ["host", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"]

    static func list(node: ConfigNode) throws -> [IdentityHeader] {
        var map = try node.mapping()
        var result: [IdentityHeader] = []
        for (claim, value) in map.all() {
            let header = try value.nonEmptyString()
            guard HeaderName.isValid(header) else { throw value.error("'\(header)' is not a valid header name") }
            guard !HeaderRules.isFraming(header) else { throw value.error("'\(header)' frames the body and is set by the gateway itself") }
            guard !HeaderRules.isConnectionLevel(header) else { throw value.error("'\(header)' is about one connection and is set by the gateway itself") }
            guard !gatewayStated.contains(header.lowercased()) else { throw value.error("'\(header)' is set by the gateway itself") }
            guard !AmbiguousFieldName.isAmbiguous(header) else {
                throw value.error("'\(header)' has a character other than a letter, a digit or '-'; CGI-style upstreams read _ (and such characters) as - and would see another name")
            }
            result.append(IdentityHeader(claim: claim, header: header))
        }
        return result
    }
}
