import PortcullisConfig

/// How the public listener learns the client's address: top-level `proxy_protocol`,
/// `trusted_proxies` and `client_address_header`.
public struct ClientAddressConfig: Sendable {
    /// Which forwarding header a trusted proxy states the client in.
    public enum Header: String, Sendable, CaseIterable {
        case xForwardedFor = "x-forwarded-for"
        case forwarded
    }

    /// Networks whose connections may state the client's address; empty: none (the TCP peer is
    /// the client).
    var trustedProxies: [CIDR] = []
    public var header: Header = .xForwardedFor
    /// Every connection starts with a PROXY protocol (v1 or v2) header naming the client.
    public var proxyProtocol = false

    public init() {}

    /// Reads the keys from the top-level mapping.
    init(map: inout ConfigMapping) throws {
        if let node = map.optional("trusted_proxies") {
            for text in try node.stringList() {
                switch CIDR.parse(text) {
                case .success(let cidr): trustedProxies.append(cidr)
                case .failure(let problem): throw node.error("'\(text)' \(problem)")
                }
            }
        }
        proxyProtocol = try map.optional("proxy_protocol")?.bool() ?? false
        if let node = map.optional("client_address_header") {
            let text = try node.string().lowercased()
            guard let header = Header(rawValue: text) else {
                throw node.error("expected one of \(Header.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
            }
            self.header = header
        }
    }
}
