import Synchronization

/// The subscriber's end of its event stream: yields events within the consumer's
/// `RedisEventBuffer`, and remembers when it dropped one (`RedisSubscriber.takeOverflow`), so
/// that the consumer resyncs from keys instead of trusting a stream with a hole in it.
final class RedisEventSink: Sendable {
    let continuation: AsyncStream<RedisPubSubEvent>.Continuation
    private let buffer: RedisEventBuffer?
    /// Events yielded and not yet taken, and their bytes. A lock taken once per event on each
    /// side, uncontended but for a consumer that is behind.
    private let held = Mutex<(events: Int, bytes: Int)>((0, 0))
    private let overflowed = Atomic<Bool>(false)

    init(_ continuation: AsyncStream<RedisPubSubEvent>.Continuation, buffer: RedisEventBuffer?) {
        self.continuation = continuation
        self.buffer = buffer
    }

    /// Connection events are always held: a dropped `.disconnected` would leave the consumer
    /// believing it is subscribed.
    func yield(_ event: RedisPubSubEvent) {
        if let buffer {
            let size = event.bufferedBytes
            let admitted = held.withLock { held in
                let isMessage = switch event {
                case .message, .patternMessage: true
                case .connected, .disconnected: false
                }
                guard !isMessage || held.events == 0 || (held.events < buffer.events && held.bytes + size <= buffer.bytes) else {
                    // Under the lock: a consumer that takes the last held event then sees the drop.
                    overflowed.store(true, ordering: .releasing)
                    return false
                }
                held.events += 1
                held.bytes += size
                return true
            }
            guard admitted else { return }
        }
        continuation.yield(event)
    }

    /// The consumer took `event` from the stream.
    func taken(_ event: RedisPubSubEvent) {
        guard buffer != nil else { return }
        let size = event.bufferedBytes
        held.withLock { held in
            held.events -= 1
            held.bytes -= size
        }
    }

    /// Whether an event was dropped since the last call.
    func takeOverflow() -> Bool {
        overflowed.exchange(false, ordering: .acquiringAndReleasing)
    }
}
