import PortcullisConfig

/// One entry of `rate_limits:`: at most `limit` requests per sliding `window` for each distinct key,
/// and, when `burst` is set, no more than `burst` at once (a token bucket refilled at limit/window).
public struct RateLimitPolicy: Sendable, Hashable {
    /// What requests are counted together.
    public enum Key: Sendable, Hashable, CustomStringConvertible {
        /// The token's `sub`.
        case subject
        /// The token's `client_id` (else `azp`).
        case clientID
        /// The client's IP address: the TCP peer, or behind a trusted proxy the address its forwarding header names (the gateway's `trusted_proxies`).
        case ip
        /// The value of a request header.
        case header(String)
        /// The route as a whole.
        case route

        public var description: String {
            switch self {
            case .subject: "subject"
            case .clientID: "client_id"
            case .ip: "ip"
            case .header(let name): "header:\(name)"
            case .route: "route"
            }
        }
    }

    public var name: String
    public var key: Key
    public var limit: Int
    public var window: Duration
    public var burst: Int?
    /// Distinct keys one node tracks for this policy; a request with a new key beyond it counts
    /// under one of the policy's overflow keys, by client address (see `ShardedKeys`). Default 10 000.
    public var maxKeys: Int
    /// IPv6 clients are counted by network: the address's first `ipv6Prefix` bits. Default 64.
    public var ipv6Prefix: Int

    public init(name: String, key: Key, limit: Int, window: Duration, burst: Int? = nil, maxKeys: Int = 10_000, ipv6Prefix: Int = 64) {
        self.name = name
        self.key = key
        self.limit = limit
        self.window = window
        self.burst = burst
        self.maxKeys = maxKeys
        self.ipv6Prefix = ipv6Prefix
    }

    /// Parses one entry of `rate_limits:`.
    public init(node: ConfigNode) throws {
        var map = try node.mapping()
        name = try map.required("name").nonEmptyString()
        let keyNode = try map.required("key")
        let keyText = try keyNode.string()
        switch keyText {
        case "subject", "sub": key = .subject
        case "client_id", "client": key = .clientID
        case "ip": key = .ip
        case "route": key = .route
        default:
            let headerName = keyText.dropFirst(7)
            let validName = !headerName.isEmpty && headerName.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
            guard keyText.hasPrefix("header:"), validName else {
                throw keyNode.error("key must be subject, client_id, ip, route or header:<Name>, got '\(keyText)'")
            }
            key = .header(String(keyText.dropFirst(7)).lowercased())
        }
        limit = try map.required("limit").int(in: 1...1_000_000_000)
        let windowNode = try map.required("window")
        window = try windowNode.duration()
        guard window >= .milliseconds(100) else { throw windowNode.error("window must be at least 100ms") }
        if let burstNode = map.optional("burst") {
            let value = try burstNode.int(in: 1...1_000_000_000)
            guard value <= limit else { throw burstNode.error("burst (\(value)) cannot exceed limit (\(limit))") }
            burst = value
        }
        maxKeys = try map.optional("max_keys")?.int(in: 1...10_000_000) ?? 10_000
        ipv6Prefix = try map.optional("ipv6_prefix")?.int(in: 1...128) ?? 64
        try map.finish()
    }
}
