import Foundation
import Logging
import PortcullisCluster
import PortcullisRedis

/// Times revocation propagation the way the control plane sees it: subscribed to the nodes'
/// signed acknowledgements, it writes revocations one at a time and takes, per node, the first
/// acknowledgement covering each (its latency is the node's own measurement from Redis `TIME` at
/// the durable write to applied; every change of one message was written at one Redis time).
/// "To all" is the slowest node per revocation.
struct PropagationProbe {
    /// Propagation samples in milliseconds.
    struct Samples {
        var toAll: [Double] = []
        var perNode: [String: [Double]] = [:]
        /// Revocations that not every node acknowledged live within 5 s.
        var missed = 0

        func line(nodes: Int) -> String {
            String(format: "to all %d nodes: p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d%@)",
                   nodes, percentile(toAll, 50), percentile(toAll, 90), percentile(toAll, 99), toAll.max() ?? 0, toAll.count,
                   missed > 0 ? ", \(missed) not acknowledged live by every node" : "")
        }
    }

    let acks: AckCollector
    private let subscriber: RedisSubscriber
    private let listener: Task<Void, Never>

    /// Subscribes to the acknowledgement channel of `cluster`.
    init(cluster: BenchCluster) throws {
        let subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: cluster.group,
                                         logger: Logger(label: "bench"))
        let acks = AckCollector()
        let mac = cluster.mac
        self.subscriber = subscriber
        self.acks = acks
        listener = Task {
            for await event in subscriber.events(channels: [ClusterKeys(prefix: "portcullis:").ackChannel], patterns: []) {
                if case .message(_, let payload) = event, let ack = try? NodeAck.decode(String(decoding: payload, as: UTF8.self), mac: mac) {
                    acks.add(ack)
                }
            }
        }
    }

    /// Writes `count` jti revocations `intervalMillis` apart, each once the previous one is
    /// acknowledged by `nodes` nodes (or 5 s passed).
    func time(_ cluster: BenchCluster, count: Int, intervalMillis: Int, nodes: Int, label: String = "bench") async throws -> Samples {
        var samples = Samples()
        for index in 0..<count {
            let event = try await cluster.revoke("\(label)-\(index)-\(UUID().uuidString)")
            let deadline = ContinuousClock.now + .seconds(5)
            var found: [String: Int64?] = [:]
            while ContinuousClock.now < deadline {
                found = acks.first(atOrAfter: event.sequence, epoch: event.epoch)
                if found.count >= nodes { break }
                try await Task.sleep(for: .milliseconds(1))
            }
            let latencies = found.compactMapValues { $0 }
            guard latencies.count >= nodes else {
                print("  revocation \(event.sequence): only \(latencies.count) nodes acknowledged it live within 5 s")
                samples.missed += 1
                continue
            }
            for (node, micros) in latencies { samples.perNode[node, default: []].append(Double(micros) / 1000) }
            samples.toAll.append(Double(latencies.values.max() ?? 0) / 1000)
            try await Task.sleep(for: .milliseconds(intervalMillis))
        }
        return samples
    }

    func close() async {
        listener.cancel()
        await subscriber.close()
    }
}
