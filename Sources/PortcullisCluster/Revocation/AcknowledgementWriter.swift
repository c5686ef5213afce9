import PortcullisRedis
import Synchronization

/// Writes a node's acknowledgements to Redis in order, off the sync's path: the next revocation
/// is applied while the previous acknowledgement is still on its way. Whatever queued up while a
/// write was in flight goes out together in one pipeline, the node record taking only the newest
/// acknowledgement, so the writer never falls behind a burst. Ends when the writer is released.
final class AcknowledgementWriter: Sendable {
    /// One acknowledgement: the node record's update, and the per-sequence entry and publication.
    struct Acknowledgement: Sendable {
        var record: [RedisArgument]
        var others: [[RedisArgument]]
    }

    /// Shared with the writing task (which must not hold the writer itself, or it would never end).
    private final class Queue: Sendable {
        let pending = Mutex<[Acknowledgement]>([])
    }

    private let queue = Queue()
    private let signal: AsyncStream<Void>.Continuation

    init(client: RedisClient) {
        let (stream, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.signal = signal
        let queue = self.queue
        Task {
            for await _ in stream {
                let batch = queue.pending.withLock { pending in
                    defer { pending.removeAll(keepingCapacity: true) }
                    return pending
                }
                guard let newest = batch.last else { continue }
                let commands = batch.flatMap(\.others) + [newest.record]
                // The first command after Redis came back may meet the dead connection; one retry
                // reconnects. A still-failing acknowledgement is repaired by the next heartbeat.
                if (try? await client.pipeline(commands)) == nil {
                    _ = try? await client.pipeline(commands)
                }
            }
        }
    }

    deinit {
        signal.finish()
    }

    /// Queues one acknowledgement (past 10 000 queued, the oldest per-sequence entries go: the
    /// node record carries the newest anyway).
    func send(_ acknowledgement: Acknowledgement) {
        queue.pending.withLock { pending in
            if pending.count >= 10_000 { pending.removeFirst(pending.count - 9_999) }
            pending.append(acknowledgement)
        }
        signal.yield()
    }
}
