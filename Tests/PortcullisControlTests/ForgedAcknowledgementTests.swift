import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// The attacker writes to Redis without the cluster secret and tries to make `?wait` report a
/// revocation as applied by a gateway that never applied it (paused with SIGSTOP), and to keep
/// that gateway's record alive after it stopped heartbeating.
@Suite("forged acknowledgements", .serialized)
struct ForgedAcknowledgementTests {
    /// A control plane with `gw-live` and `gw-paused` (paused with SIGSTOP once both are live),
    /// `attack` running against Redis in a loop while `body` runs; everything is undone after.
    static func withPausedGateway(attack: @escaping @Sendable (RedisClient) async -> Void,
                                  _ body: (ControlCluster) async throws -> Void) async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            try await cluster.startGateway(id: "gw-live")
            let paused = try await cluster.startGateway(id: "gw-paused")
            try await eventually("both gateways live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 2
            }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: group,
                                     logger: Logger(label: "attacker"))
            paused.process.signal(SIGSTOP)
            let attacker = Task {
                while !Task.isCancelled {
                    await attack(client)
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            do {
                try await body(cluster)
            } catch {
                attacker.cancel()
                throw error
            }
            attacker.cancel()
            _ = await attacker.value
            paused.process.signal(SIGCONT)
            await client.close()
            try? await group.shutdownGracefully()
        }
    }

    static func revokeAndWait(_ cluster: ControlCluster, _ jti: String) throws -> HTTPTestResponse {
        try cluster.control.admin("POST", "/v1/revocations?wait=1500ms",
                                  json: #"{"kind":"jti","value":"\#(jti)","exp":\#(Int64(Date().timeIntervalSince1970) + 600)}"#)
    }

    @Test("a forged acknowledgement for a paused gateway is not counted by wait, and is reported as tampering")
    func forgedAckDuringWait() async throws {
        // For every sequence near the head, an acknowledgement from gw-paused (unsigned, and
        // gw-live's real one relabelled), and the paused node's record kept alive.
        try await Self.withPausedGateway(attack: { client in
            let head = (try? await client.send("GET", "portcullis:rev:head").string) ?? ""
            let parts = head.split(separator: " ")  // head3 <epoch> <seq> <last> <floor> <beat> <mac>
            if parts.count == 7, let sequence = Int64(parts[2]) {
                for seq in sequence...(sequence + 2) {
                    let live = (try? await client.send("HGET", RedisArgument("portcullis:rev:acks:\(seq)"), "gw-live").string) ?? ""
                    let relabelled = live.replacingOccurrences(of: "gw-live", with: "gw-paused")
                    let forged = relabelled.isEmpty ? "ack3 gw-paused x \(parts[1]) \(seq) - 100 forged" : relabelled
                    _ = try? await client.send("HSET", RedisArgument("portcullis:rev:acks:\(seq)"), "gw-paused", RedisArgument(forged))
                    _ = try? await client.send("HSET", "portcullis:node:gw-paused", "ack", RedisArgument(forged))
                }
            }
            _ = try? await client.send("PEXPIRE", "portcullis:node:gw-paused", "60000")
            _ = try? await client.send("PUBLISH", "portcullis:rev:acks", "ack3 gw-paused x x 1 - 1 forged")
        }) { cluster in
            let response = try Self.revokeAndWait(cluster, "paused-test")
            #expect(response.status == 202, "wait must not complete: \(response.text)")
            let propagation = response.json["propagation"] as? [String: Any]
            #expect(propagation?["laggards"] as? [String] == ["gw-paused"])
            #expect(propagation?["complete"] as? Bool == false)
            // The forged acknowledgements were really there, and each kind was reported.
            #expect(try cluster.redis.cli("HGET", "portcullis:rev:acks:\(response.json["sequence"] as? Int ?? 0)", "gw-paused").contains("gw-paused"))
            try await eventually("reported as tampering") {
                let metrics = try cluster.control.metrics()
                return metrics.contains("portcullis_cluster_tampering_total{key=\"rev:acks:*\"}")
                    && metrics.contains("portcullis_cluster_tampering_total{key=\"node:*\"}")
                    && metrics.contains("portcullis_cluster_tampering_total{key=\"rev:acks\"}")
            }
            // Kept alive by the attacker past three of its heartbeats, the paused node is still not
            // live: its signed heartbeat time gives it away.
            try await Task.sleep(for: .seconds(3))
            try await eventually("the paused node left the live set") {
                let nodes = try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]] ?? []
                return nodes.map { $0["id"] as? String } == ["gw-live"]
            }
            // Whichever node read the record first reported it (and pruned its id from the set).
            let readers = [cluster.control.process.output] + cluster.gateways.map(\.process.output)
            #expect(readers.contains { $0.contains("a dead node's record kept alive") })
        }
    }

    @Test("deleting a paused gateway's record does not let wait complete without it")
    func deletedRecordDuringWait() async throws {
        try await Self.withPausedGateway(attack: { client in
            _ = try? await client.send("DEL", "portcullis:node:gw-paused")
            _ = try? await client.send("SREM", "portcullis:nodes", "gw-paused")
        }) { cluster in
            let response = try Self.revokeAndWait(cluster, "vanished-test")
            #expect(response.status == 202, "wait must not complete: \(response.text)")
            #expect((response.json["propagation"] as? [String: Any])?["laggards"] as? [String] == ["gw-paused"])
            #expect(cluster.control.process.output.contains("vanished before its TTL ran out, without the node leaving"))
        }
    }
}
