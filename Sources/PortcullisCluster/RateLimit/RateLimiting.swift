/// The answer to one request's rate-limit check.
public struct RateLimitDecision: Sendable, Equatable {
    public var allowed: Bool
    /// The policy's limit per window (`RateLimit-Limit`).
    public var limit: Int
    /// Requests left in the current window (`RateLimit-Remaining`).
    public var remaining: Int
    /// Seconds until the window has room again (`RateLimit-Reset`, and `Retry-After` when rejected).
    public var resetSeconds: Int
    /// The request's key was new and its policy already held `maxKeys` keys on this node: it was
    /// counted under the overflow key of its client's group (`ShardedKeys`).
    public var overflowed = false

    public init(allowed: Bool, limit: Int, remaining: Int, resetSeconds: Int) {
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.resetSeconds = resetSeconds
    }
}

/// Decides whether a request fits its policy. Called on an event loop for every rate-limited
/// request: implementations must not block or do I/O (a cluster-wide limiter syncs in the background).
/// A rejected request must not consume the window.
public protocol RateLimiting: Sendable {
    /// Counts one request under `key`; `client` gives the requesting client's own address key
    /// (`ip:…`), which picks the overflow key a new key shares while the policy is full (asked
    /// for only then).
    func acquire(policy: RateLimitPolicy, key: String, client: () -> String) -> RateLimitDecision
    /// "local" or "cluster" or "fallback": exported as a metric and on the admin API.
    var mode: String { get }
}

extension RateLimiting {
    /// Counts one request whose client is its key (an `ip` policy's request, or a test's).
    public func acquire(policy: RateLimitPolicy, key: String) -> RateLimitDecision {
        acquire(policy: policy, key: key, client: key)
    }

    /// Counts one request of the client whose address key is `client`.
    public func acquire(policy: RateLimitPolicy, key: String, client: String) -> RateLimitDecision {
        acquire(policy: policy, key: key, client: { client })
    }
}
