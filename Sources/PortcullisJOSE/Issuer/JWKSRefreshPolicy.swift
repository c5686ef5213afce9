import PortcullisConfig

/// How often and how defensively a remote JWKS is fetched (`issuers[].jwks_refresh`).
public struct JWKSRefreshPolicy: Sendable, Equatable {
    /// Refresh interval when the response has no usable `Cache-Control: max-age`.
    public var interval: Duration = .seconds(300)
    /// Lower bound for the refresh interval (and for retries after a failure).
    public var minInterval: Duration = .seconds(30)
    /// Upper bound for the refresh interval, whatever `max-age` says.
    public var maxInterval: Duration = .seconds(86_400)
    /// How long the last good set keeps serving while the issuer cannot be reached; after that the
    /// issuer's keys are dropped and its tokens fail with `keys_not_loaded`.
    public var maxStale: Duration = .seconds(86_400)
    /// At most one unknown-`kid` refetch per issuer in this period.
    public var unknownKeyIDThrottle: Duration = .seconds(30)
    /// A `kid` still unknown after a refetch is not refetched for again for this long.
    public var negativeCache: Duration = .seconds(300)

    /// A policy with every default.
    public init() {}

    /// Reads a `jwks_refresh:` mapping; absent keys keep their defaults.
    public init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let value = map.optional("interval") { interval = try value.duration() }
        if let value = map.optional("min_interval") { minInterval = try value.duration() }
        if let value = map.optional("max_interval") { maxInterval = try value.duration() }
        if let value = map.optional("max_stale") { maxStale = try value.duration() }
        if let value = map.optional("unknown_kid_throttle") { unknownKeyIDThrottle = try value.duration() }
        if let value = map.optional("negative_cache") { negativeCache = try value.duration() }
        try map.finish()
        guard minInterval > .zero else { throw node.error("min_interval must be greater than zero") }
        guard minInterval <= maxInterval else { throw node.error("min_interval must not exceed max_interval") }
        guard interval >= minInterval, interval <= maxInterval else {
            throw node.error("interval must lie between min_interval and max_interval")
        }
    }

    /// The refresh delay for a response that said `max-age` (nil: none given), clamped to the bounds.
    public func refreshDelay(maxAge: Duration?) -> Duration {
        let wanted = maxAge ?? interval
        return min(max(wanted, minInterval), maxInterval)
    }
}
