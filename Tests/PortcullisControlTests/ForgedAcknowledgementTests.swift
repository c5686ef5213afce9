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
    @Test("a forged acknowledgement for a paused gateway is not counted by wait, and is reported as tampering")
    func forgedAckDuringWait() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            try await cluster.startGateway(id: "gw-live")
            let paused = try await cluster.startGateway(id: "gw-paused")
            try await eventually("both gateways live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 2
            }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: group, logger: Logger(label: "attacker"))
            paused.process.signal(SIGSTOP)
            // The attacker: for every sequence near the head, an acknowledgement from gw-paused
            // (unsigned, and gw-live's real one relabelled), and the paused node's record kept alive.
            let attacker = Task {
                while !Task.isCancelled {
                    let head = (try? await client.send("GET", "portcullis:rev:head").string) ?? ""
                    let parts = head.split(separator: " ")
                    if parts.count == 6, let sequence = Int64(parts[2]) {
                        for seq in sequence...(sequence + 2) {
                            let live = (try? await client.send("HGET", RedisArgument("portcullis:rev:acks:\(seq)"), "gw-live").string) ?? ""
                            let relabelled = live.replacingOccurrences(of: "gw-live", with: "gw-paused")
                            let forged = relabelled.isEmpty ? "ack2 gw-paused \(parts[1]) \(seq) 100 forged" : relabelled
                            _ = try? await client.send("HSET", RedisArgument("portcullis:rev:acks:\(seq)"), "gw-paused", RedisArgument(forged))
                            _ = try? await client.send("HSET", "portcullis:node:gw-paused", "ack", RedisArgument(forged))
                        }
                    }
                    _ = try? await client.send("PEXPIRE", "portcullis:node:gw-paused", "60000")
                    _ = try? await client.send("PUBLISH", "portcullis:rev:acks", "ack2 gw-paused x 1 1 forged")
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            defer { attacker.cancel() }
            let response = try cluster.control.admin("POST", "/v1/revocations?wait=1500ms",
                                                     json: #"{"kind":"jti","value":"paused-test","exp":\#(Int64(Date().timeIntervalSince1970) + 600)}"#)
            #expect(response.status == 202, "wait must not complete: \(response.text)")
            let propagation = response.json["propagation"] as? [String: Any]
            #expect(propagation?["laggards"] as? [String] == ["gw-paused"])
            #expect(propagation?["complete"] as? Bool == false)
            try await eventually("reported as tampering") {
                let metrics = try cluster.control.metrics()
                return metrics.contains("portcullis_cluster_tampering_total{key=\"rev:acks:*\"}")
                    || metrics.contains("portcullis_cluster_tampering_total{key=\"node:*\"}")
            }
            // Kept alive by the attacker past three of its heartbeats, the paused node is still not
            // live: its signed heartbeat time gives it away.
            try await Task.sleep(for: .seconds(3))
            try await eventually("the paused node left the live set") {
                let nodes = try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]] ?? []
                return nodes.map { $0["id"] as? String } == ["gw-live"]
            }
            #expect(cluster.control.process.output.contains("a dead node's record kept alive"))
            attacker.cancel()
            _ = await attacker.value
            paused.process.signal(SIGCONT)
            await client.close()
            try? await group.shutdownGracefully()
        }
    }

    @Test("deleting a paused gateway's record does not let wait complete without it")
    func deletedRecordDuringWait() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            try await cluster.startGateway(id: "gw-live")
            let paused = try await cluster.startGateway(id: "gw-paused")
            try await eventually("both gateways live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 2
            }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: group, logger: Logger(label: "attacker"))
            paused.process.signal(SIGSTOP)
            let attacker = Task {
                while !Task.isCancelled {
                    _ = try? await client.send("DEL", "portcullis:node:gw-paused")
                    _ = try? await client.send("SREM", "portcullis:nodes", "gw-paused")
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            let response = try cluster.control.admin("POST", "/v1/revocations?wait=1500ms",
                                                     json: #"{"kind":"jti","value":"vanished-test","exp":\#(Int64(Date().timeIntervalSince1970) + 600)}"#)
            attacker.cancel()
            _ = await attacker.value
            #expect(response.status == 202, "wait must not complete: \(response.text)")
            #expect((response.json["propagation"] as? [String: Any])?["laggards"] as? [String] == ["gw-paused"])
            #expect(cluster.control.process.output.contains("vanished before its TTL ran out, without the node leaving"))
            paused.process.signal(SIGCONT)
            await client.close()
            try? await group.shutdownGracefully()
        }
    }
}
