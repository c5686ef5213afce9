/// A token bucket for `burst`: at most `capacity` requests at once, refilled at `rate` per second.
public struct TokenBucket: Sendable, Equatable {
    public let capacity: Double
    /// Tokens per nanosecond.
    public let refillPerNano: Double
    public private(set) var tokens: Double
    public private(set) var updatedAt: UInt64

    public init(capacity: Int, limit: Int, window: Duration, now: UInt64) {
        self.capacity = Double(capacity)
        let windowNanos = window.seconds * 1e9
        refillPerNano = Double(limit) / windowNanos
        tokens = Double(capacity)
        updatedAt = now
    }

    public mutating func refill(to now: UInt64) {
        guard now > updatedAt else { return }
        tokens = min(capacity, tokens + Double(now - updatedAt) * refillPerNano)
        updatedAt = now
    }

    /// Nanoseconds until one token is available.
    public func nanosUntilToken() -> UInt64 {
        tokens >= 1 ? 0 : UInt64((1 - tokens) / refillPerNano)
    }

    public mutating func take() {
        tokens -= 1
    }
}
