import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// `cluster.revocation.required_replicas`: the admin API acknowledges a revocation only once that
/// many Redis replicas hold it, so a failover to a replica cannot lose an acknowledged revocation.
/// Real redis-server primary and replica, a real control plane.
@Suite("Revocations wait for Redis replicas", .serialized)
struct ReplicaDurabilityTests {
    static func control(redisURL: String, replicas: Int) async throws -> ControlProcess {
        try await ControlProcess.start(waitForSigningKey: false) { port, adminPort, _ in
            ControlCluster.controlConfig(port: port, adminPort: adminPort, redisURL: redisURL, nodeID: "control-1",
                                         authorizationServer: false, controlExtra: "", asExtra: "")
                .replacingOccurrences(of: "  heartbeat_interval: 300ms\n",
                                      with: "  heartbeat_interval: 300ms\n  revocation: {required_replicas: \(replicas), replica_timeout: 400ms}\n")
        }
    }

    static func revoke(_ control: ControlProcess, _ jti: String) throws -> HTTPTestResponse {
        try control.admin("POST", "/v1/revocations", json: #"{"kind": "jti", "value": "\#(jti)"}"#)
    }

    @Test("a revocation is acknowledged only when a replica holds it; with the replica stopped the call fails loudly and says why")
    func acknowledgedOnlyWhenReplicated() async throws {
        let primary = try await RedisServerFixture.start()
        try await withCleanup(primary, { await $0.stop() }) { primary in
            let replica = try await RedisServerFixture.start(extraArguments: ["--replicaof", primary.host, "\(primary.port)"])
            try await withCleanup(replica, { await $0.stop() }) { replica in
                #expect(try await Poll.until(timeout: .seconds(20)) { try replica.cli("INFO", "replication").contains("master_link_status:up") },
                        "the replica did not sync")
                let control = try await Self.control(redisURL: primary.url, replicas: 1)
                try await withCleanup(control, { await $0.stop() }) { control in
                    // Replica in step: 201, and the replica already holds the change when the call returns.
                    let acknowledged = try Self.revoke(control, "replicated-1")
                    #expect(acknowledged.status == 201, "\(acknowledged.text)")
                    let id = try #require(acknowledged.json["id"] as? String)
                    #expect(try replica.cli("HEXISTS", "portcullis:rev:ids", id).contains("1"), "the replica lacks \(id) when the call returned")

                    // The replica stops answering: the primary cannot get its confirmation. The call
                    // must not report success.
                    replica.suspend()
                    let unconfirmed = try Self.revoke(control, "unreplicated-1")
                    replica.resume()
                    #expect(unconfirmed.status >= 500, "acknowledged without a replica: \(unconfirmed.status) \(unconfirmed.text)")
                    #expect(unconfirmed.text.contains("replicas confirmed"), "\(unconfirmed.text)")
                    // Once the replica is back, writes are acknowledged again.
                    #expect(try await Poll.until(timeout: .seconds(10)) {
                        try Self.revoke(control, "replicated-\(UUID().uuidString.prefix(6))").status == 201
                    }, "writes were not acknowledged again after the replica came back")
                }
            }
        }
    }

    @Test("without required_replicas a revocation is acknowledged on the primary's word, even with no replica at all")
    func primaryAloneByDefault() async throws {
        let primary = try await RedisServerFixture.start()
        try await withCleanup(primary, { await $0.stop() }) { primary in
            let control = try await Self.control(redisURL: primary.url, replicas: 0)
            try await withCleanup(control, { await $0.stop() }) { control in
                let reply = try Self.revoke(control, "alone-1")
                #expect(reply.status == 201, "\(reply.text)")
            }
        }
    }

    @Test("required_replicas is refused in a gateway's config, naming the key")
    func gatewaysRefuseTheSetting() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-replicas")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/gateway.yaml"
        try """
        listen: 127.0.0.1:1
        cluster:
          redis: redis://127.0.0.1:1
          secret: \(Base64URL.encode(ControlCluster.secret))
          revocation:
            required_replicas: 1
        routes:
          - {name: r, path_prefix: /, upstream: {targets: [127.0.0.1:2]}}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try runCommand(PortcullisBinary.path, ["gateway", "--config", file, "--check"])
        #expect(result.status == 2, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("gateway.yaml:6") && result.stderr.contains("required_replicas is a control-plane setting"), "\(result.stderr)")
    }
}
