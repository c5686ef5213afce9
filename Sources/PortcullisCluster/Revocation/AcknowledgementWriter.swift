import PortcullisRedis

/// Writes a node's acknowledgements to Redis in order, off the sync's path: the next revocation
/// is applied while the previous acknowledgement is still on its way, so a burst of changes is
/// not slowed by one Redis round trip per change. Ends when the writer is released.
final class AcknowledgementWriter: Sendable {
    private let continuation: AsyncStream<[[RedisArgument]]>.Continuation

    init(client: RedisClient) {
        let (stream, continuation) = AsyncStream.makeStream(of: [[RedisArgument]].self, bufferingPolicy: .bufferingNewest(10_000))
        self.continuation = continuation
        Task {
            for await commands in stream {
                // The first command after Redis came back may meet the dead connection; one retry
                // reconnects. A still-failing acknowledgement is repaired by the next heartbeat.
                if (try? await client.pipeline(commands)) == nil {
                    _ = try? await client.pipeline(commands)
                }
            }
        }
    }

    deinit {
        continuation.finish()
    }

    /// Queues one acknowledgement's commands (the oldest are dropped past 10 000 queued: the
    /// node record carries the newest anyway).
    func send(_ commands: [[RedisArgument]]) {
        continuation.yield(commands)
    }
}
