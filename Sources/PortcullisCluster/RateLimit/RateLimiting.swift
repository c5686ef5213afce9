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
    /// counted under the policy's shared overflow key.
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
    func acquire(policy: RateLimitPolicy, key: String) -> RateLimitDecision
    /// "local" or "cluster" or "fallback": exported as a metric and on the admin API.
    var mode: String { get }
}
