/// What a `RedisSubscriber` reports, in order.
public enum RedisPubSubEvent: Sendable, Equatable {
    /// Every channel and pattern subscription is confirmed. `reconnect` is true after any
    /// reconnect: messages published while disconnected are lost, so the caller must resync
    /// whatever state it derives from them.
    case connected(reconnect: Bool)
    /// A message published to `channel`, one of the subscribed channels.
    case message(channel: String, payload: [UInt8])
    /// A message published to `channel`, received through the subscribed `pattern`.
    case patternMessage(pattern: String, channel: String, payload: [UInt8])
    /// The subscription is gone (or could not be established), with the reason. A reconnect with
    /// capped exponential backoff and jitter follows automatically; further failed attempts during
    /// the same outage are logged, not reported again.
    case disconnected(String)
}
