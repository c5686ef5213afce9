import Synchronization

/// Work named by a key, queued at most once while it waits: a flood of messages naming the same
/// keys costs a set insert each, and the work runs once per key, off the reader of the messages.
/// Without it a `keys:events` flood would make every gateway read Redis once per announcement on
/// the task that also applies revocations, which would then wait behind the backlog. Each key waits at most once, so the queue holds no more keys than the caller offers
/// distinct ones; with a `limit`, the oldest beyond it is dropped.
public final class CoalescingQueue<Key: Hashable & Sendable>: Sendable {
    private let pending = Mutex<Set<Key>>([])
    private let continuation: AsyncStream<Key>.Continuation
    /// The keys to work on, each once per offer that found it not waiting; one consumer.
    public let keys: AsyncStream<Key>

    public init(limit: Int? = nil) {
        (keys, continuation) = AsyncStream.makeStream(of: Key.self, bufferingPolicy: limit.map { .bufferingNewest($0) } ?? .unbounded)
    }

    /// Queues `key` unless it already waits; false when it did.
    @discardableResult
    public func offer(_ key: Key) -> Bool {
        guard pending.withLock({ $0.insert(key).inserted }) else { return false }
        if case .dropped(let oldest) = continuation.yield(key) {
            pending.withLock { _ = $0.remove(oldest) }
        }
        return true
    }

    /// The consumer took `key` from `keys` and is about to work on it: an offer from now on
    /// queues it again.
    public func taken(_ key: Key) {
        pending.withLock { _ = $0.remove(key) }
    }

    public func finish() {
        continuation.finish()
    }
}
