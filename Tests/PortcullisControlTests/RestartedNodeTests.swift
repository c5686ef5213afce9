import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisRedis
import PortcullisTestSupport
import Synchronization
import Testing

/// A gateway's default node id is the same across restarts (`<hostname>-<listen port>`), so a
/// new process takes over its predecessor's membership entry — and must not take over what the
/// predecessor applied: the control plane counts an acknowledgement only from the process
/// (`instance`) named in the node's current record (docs/model.md §3).
@Suite("a node restarted under the same id", .serialized)
struct RestartedNodeTests {
    @Test("a new process under a node's id is not credited with its predecessor's acknowledgements")
    func newProcessIsNotCreditedWithOldAcknowledgements() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let old = try await cluster.startGateway(id: "gw-1")
            try await eventually("gw-1 live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 1
            }
            // The first process applies a revocation: its signed acknowledgement is in its record
            // and in the change's acknowledgement hash.
            let revoked = try ForgedAcknowledgementTests.revokeAndWait(cluster, "before-restart")
            #expect(revoked.status == 201, "\(revoked.text)")
            let id = try #require(revoked.json["id"] as? String)
            let oldInstance = try cluster.redis.cli("HGET", "portcullis:node:gw-1", "instance").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!oldInstance.isEmpty)

            // The old process goes quiet (its record and acknowledgements stay), and a new process
            // under the same id registers before it has synced: a record of its own, no ack.
            old.process.signal(SIGSTOP)
            // Resumed on every exit, a failed expectation included, so that the fixture can stop it.
            defer { old.process.signal(SIGCONT) }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: group,
                                     logger: Logger(label: "restarted"))
            let membership = Membership(client: client, keys: ClusterKeys(prefix: "portcullis:"),
                                        mac: ClusterMAC(secret: ControlCluster.secret, cluster: "portcullis:"),
                                        alarm: TamperingAlarm(prefix: "portcullis:", logger: Logger(label: "restarted")))
            let instance = Mutex("restarted-\(UInt64.random(in: 0...UInt64.max))")
            let heartbeats = Task {
                while !Task.isCancelled {
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    let record = NodeRecord(id: "gw-1", instance: instance.withLock { $0 }, role: "gateway", address: "127.0.0.1:1",
                                            adminAddress: "127.0.0.1:2", version: "test", startedAtMillis: now, heartbeatAtMillis: now,
                                            heartbeatIntervalMillis: 300, ack: nil, keySetVersions: [:], rateLimitMode: "cluster",
                                            redisConnected: true, revocationStalenessSeconds: 0)
                    try? await membership.heartbeat(record, interval: .milliseconds(300))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { heartbeats.cancel() }

            func propagation() throws -> [String: Any] {
                try cluster.control.admin("GET", "/v1/revocations/\(id)").json["propagation"] as? [String: Any] ?? [:]
            }
            try await eventually("the new process's record is the one read") {
                try cluster.redis.cli("HGET", "portcullis:node:gw-1", "instance").contains("restarted-")
            }
            // The old process's acknowledgement is still in Redis, valid and signed, but it is not
            // the new process's: gw-1 has not applied the change.
            try await Task.sleep(for: .milliseconds(500))
            let after = try propagation()
            #expect(after["complete"] as? Bool == false, "\(after)")
            #expect(after["laggards"] as? [String] == ["gw-1"], "\(after)")

            // The same record naming the old process again: its acknowledgement counts (so what
            // made the difference above is the instance, nothing else).
            instance.withLock { $0 = oldInstance }
            try await eventually("the old process's acknowledgement counts for its own record") {
                try propagation()["complete"] as? Bool == true
            }

            heartbeats.cancel()
            _ = await heartbeats.value
            await client.close()
            try? await group.shutdownGracefully()
        }
    }
}
