/// The events of a `RedisSubscriber`, in order. A thin wrapper over an `AsyncStream` that tells
/// the subscriber's buffer what the consumer has taken, so that a `RedisEventBuffer` can bound
/// the events held in bytes as well as in number (an `AsyncStream` counts only elements).
public struct RedisEventStream: AsyncSequence, Sendable {
    /// The stream's events.
    public typealias Element = RedisPubSubEvent

    let base: AsyncStream<RedisPubSubEvent>
    let sink: RedisEventSink

    /// Iterates the events, telling the subscriber's buffer about each one it takes.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<RedisPubSubEvent>.AsyncIterator
        let sink: RedisEventSink

        /// The next event; nil once the stream has finished (after the subscriber is closed).
        public mutating func next() async -> RedisPubSubEvent? {
            guard let event = await base.next() else { return nil }
            sink.taken(event)
            return event
        }
    }

    /// An iterator over the stream's events.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), sink: sink)
    }
}
