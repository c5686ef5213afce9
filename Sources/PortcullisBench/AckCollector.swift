import PortcullisCluster
import Synchronization

/// Signed acknowledgements by node, in arrival order.
final class AckCollector: Sendable {
    private let acks = Mutex<[String: [NodeAck]]>([:])

    func add(_ ack: NodeAck) {
        acks.withLock { $0[ack.node, default: []].append(ack) }
    }

    /// Per node, the latency of its first acknowledgement covering `sequence` (nil: applied by a catch-up).
    func first(atOrAfter sequence: Int64, epoch: RevocationEpoch) -> [String: Int64?] {
        acks.withLock { all in
            all.compactMapValues { list in
                list.first { $0.epoch == epoch && $0.sequence >= sequence }.map { $0.latencyMicros }
            }
        }
    }
}
