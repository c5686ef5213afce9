/// How much a subscription holds for a consumer that is behind: at most `events` events and
/// `bytes` bytes of channel names and payloads (one event is always held, whatever its size).
/// Beyond, new events are dropped and `RedisSubscriber.takeOverflow()` says so.
public struct RedisEventBuffer: Sendable, Hashable {
    /// The most events held.
    public var events: Int
    /// The most bytes held, counting patterns, channel names and payloads.
    public var bytes: Int

    /// A bound of `events` events and `bytes` bytes.
    public init(events: Int, bytes: Int) {
        self.events = events
        self.bytes = bytes
    }
}

extension RedisPubSubEvent {
    /// What the event holds in a buffer, as `RedisEventBuffer.bytes` counts it.
    var bufferedBytes: Int {
        switch self {
        case .message(let channel, let payload): channel.utf8.count + payload.count
        case .patternMessage(let pattern, let channel, let payload): pattern.utf8.count + channel.utf8.count + payload.count
        case .disconnected(let reason): reason.utf8.count
        case .connected: 0
        }
    }
}
