import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// The control plane's chores that the end-to-end ACL test (`RedisACLTests` in the control-plane
/// tests) does not reach in its time — pruning runs once a minute — run here directly on the
/// control plane's ACL user from `cluster/redis/make-acl.sh`, and on the gateway's, which must fail.
@Suite("Redis ACL users: revocation writing and pruning")
struct RedisACLChoreTests {
    static let gatewayPassword = "gateway-pw-61d0"
    static let controlPassword = "control-pw-a93e"

    @Test("the control plane's ACL user writes, beats and prunes the revocation log; the gateway's ACL user can do none of it")
    func pruneWithControlUserOnly() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        try Self.gatewayPassword.write(toFile: directory + "/gw.pw", atomically: true, encoding: .utf8)
        try Self.controlPassword.write(toFile: directory + "/cp.pw", atomically: true, encoding: .utf8)
        let made = try runCommand("/bin/bash", [repository + "/cluster/redis/make-acl.sh",
                                                "--gateway-password-file", directory + "/gw.pw", "--control-password-file", directory + "/cp.pw"])
        #expect(made.status == 0, "\(made.stderr)")
        try (made.stdout + "user acl-test-root on >root-pw ~* &* +@all\n").write(toFile: directory + "/users.acl", atomically: true, encoding: .utf8)
        let redis = try await RedisServerFixture.start(extraArguments: ["--aclfile", directory + "/users.acl"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let logger = Logger(label: "test")
        let keys = ClusterKeys(prefix: "portcullis:")
        let mac = ClusterMAC(secret: TestCluster.secret, cluster: "portcullis:")
        func client(_ user: String, _ password: String) throws -> RedisClient {
            RedisClient(configuration: try RedisConfiguration(url: "redis://\(user):\(password)@127.0.0.1:\(redis.port)/0"),
                        eventLoopGroup: group, logger: logger)
        }
        let control = try client("portcullis-control", Self.controlPassword)
        let gateway = try client("portcullis-gateway", Self.gatewayPassword)
        defer {
            Task {
                await control.close()
                await gateway.close()
                await redis.shutdown()
                try? await group.shutdownGracefully()
            }
        }
        let now = Int64(Date().timeIntervalSince1970)
        func revocation(_ value: String) -> Revocation {
            Revocation(id: "rev_" + UUID().uuidString.prefix(12).lowercased(), operation: .add, kind: .jti, value: value, issuer: nil,
                       until: now + 1, createdAtMillis: now * 1000, actor: "test", reason: nil)
        }

        let controlStore = RevocationStore(client: control, keys: keys, mac: mac, maxTokenLifetime: .seconds(3600))
        let event = try await controlStore.write(revocation("short-lived"))
        _ = try await controlStore.heartbeat()
        #expect(try await controlStore.list().map(\.sequence) == [event.sequence])
        // Far past the token's expiry and the grace: the entry is due.
        #expect(try await controlStore.prune(now: now + 100_000) == 1)
        #expect(try await controlStore.list().isEmpty)
        #expect(try await controlStore.head()?.floor == event.sequence)

        let gatewayStore = RevocationStore(client: gateway, keys: keys, mac: mac, maxTokenLifetime: .seconds(3600))
        await #expect(throws: (any Error).self) { _ = try await gatewayStore.write(revocation("forged")) }
        await #expect(throws: (any Error).self) { _ = try await gatewayStore.heartbeat() }
        #expect(try await controlStore.list().isEmpty)

        // Redis logged refusals of the gateway's user only.
        let log = try runCommand("/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", "\(redis.port)", "--user", "acl-test-root", "--pass", "root-pw",
                                                        "--no-auth-warning", "ACL", "LOG"]).stdout
        let users = Set(log.components(separatedBy: "\n").indices.compactMap { index -> String? in
            let lines = log.components(separatedBy: "\n")
            return lines[index] == "username" && index + 1 < lines.count ? lines[index + 1] : nil
        })
        #expect(users == ["portcullis-gateway"], "\(log)")
    }
}
