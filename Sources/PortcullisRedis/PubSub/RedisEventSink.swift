import Synchronization

/// The subscriber's end of its event stream: yields events, and remembers when a bounded
/// stream dropped one (`RedisSubscriber.takeOverflow`), so that the consumer resyncs from keys
/// instead of trusting a stream with a hole in it.
final class RedisEventSink: Sendable {
    let continuation: AsyncStream<RedisPubSubEvent>.Continuation
    private let overflowed = Atomic<Bool>(false)

    init(_ continuation: AsyncStream<RedisPubSubEvent>.Continuation) {
        self.continuation = continuation
    }

    func yield(_ event: RedisPubSubEvent) {
        if case .dropped = continuation.yield(event) {
            overflowed.store(true, ordering: .releasing)
        }
    }

    /// Whether an event was dropped since the last call.
    func takeOverflow() -> Bool {
        overflowed.exchange(false, ordering: .acquiringAndReleasing)
    }
}
