import Foundation
import PortcullisTestSupport
import Testing

/// The whole system as a user runs it: `cluster/run.sh` and `cluster/demo.sh` with the binary under
/// test, real Redis, control plane, gateways and upstream on loopback, and faults injected by PID.
@Suite("end to end: demo, node and Redis failures, partitions, metrics", .serialized)
struct EndToEndTests {
    @Test("the narrated demo holds every claim it makes")
    func demo() throws {
        let cluster = try LocalCluster()
        var environment = cluster.environment
        environment["TERM"] = "dumb"
        let result = try runCommand("/bin/bash", [PortcullisBinary.packageRoot + "/cluster/demo.sh", "--no-build"], environment: environment)
        #expect(result.status == 0, "demo failed:\n\(result.stdout.suffix(4000))\n\(result.stderr.suffix(2000))")
        #expect(result.stdout.contains("every check held"))
        #expect(!result.stdout.contains("✘"))
    }

    @Test("kill -9 a gateway under load: the others serve every request; the restarted node is ready only once synced and enforces what was revoked meanwhile")
    func killGateway() async throws {
        let cluster = try LocalCluster()
        try cluster.start()
        let token = try cluster.token()
        let survivors = try [2, 3].map { try Load(port: cluster.gatewayPort($0), token: token, seconds: 6) }
        try await Task.sleep(for: .seconds(1))
        let victim = try #require(cluster.pid("gateway-1"))
        kill(victim, SIGKILL)

        // While gw-1 is down, revoke a token.
        let doomed = try cluster.token()
        let jti = try #require(LocalCluster.claims(doomed)["jti"] as? String)
        let revocation = try cluster.revoke(jti: jti)
        #expect(revocation.status == 201, "\(revocation.text)")

        for load in survivors {
            let result = await load.result()
            #expect(result.requests > 100)
            #expect(result.failures == 0, "non-2xx on a surviving gateway")
            #expect(result.socketErrors == nil, "\(result.socketErrors ?? "")")
        }

        let restarted = try cluster.restartGateway(1)
        try await eventually(timeout: .seconds(20), "gw-1 ready again") { cluster.isReady(1) }
        // Ready means synced: the log says so before readiness, and the revocation made while it was down holds.
        #expect(restarted.output.contains("revocations synced"))
        #expect(try cluster.call(1, token: doomed).status == 401)
        #expect(try cluster.call(1, token: token).status == 200)
    }

    @Test("restart Redis under load: valid tokens never fail, old revocations hold, writes during the outage are refused, state converges within a second")
    func restartRedis() async throws {
        let cluster = try LocalCluster()
        try cluster.start()
        let token = try cluster.token()
        let revokedBefore = try cluster.token()
        let jtiBefore = try #require(LocalCluster.claims(revokedBefore)["jti"] as? String)
        #expect(try cluster.revoke(jti: jtiBefore).status == 201)

        let loads = try (1...3).map { try Load(port: cluster.gatewayPort($0), token: token, seconds: 8) }
        try await Task.sleep(for: .seconds(1))
        let redisPID = try #require(cluster.pid("redis"))
        kill(redisPID, SIGKILL)
        try await Task.sleep(for: .milliseconds(500))

        // Refused, not pretended.
        let duringOutage = try cluster.revoke(jti: "written-during-outage", wait: false)
        #expect(duringOutage.status == 503, "\(duringOutage.status) \(duringOutage.text)")
        for node in 1...3 {
            #expect(try cluster.call(node, token: revokedBefore).status == 401)
        }

        let redis = try cluster.restartRedis()
        try await Readiness.waitForPort(port: cluster.redisPort, timeout: .seconds(10))
        let back = ContinuousClock.now
        _ = redis
        // Converged: every node reconnected (metrics) within a second of Redis returning.
        try await eventually(timeout: .seconds(1), "all gateways reconnected within 1 s") {
            try (1...3).allSatisfy { try cluster.metrics(adminPort: cluster.gatewayAdminPort($0)).contains("portcullis_redis_connected 1") }
        }
        let converged = ContinuousClock.now - back
        #expect(converged < .seconds(1), "took \(converged)")

        let revokedAfter = try cluster.token()
        let jtiAfter = try #require(LocalCluster.claims(revokedAfter)["jti"] as? String)
        let after = try cluster.revoke(jti: jtiAfter)
        #expect(after.status == 201, "\(after.text)\n\(cluster.logs().suffix(6000))")
        for node in 1...3 {
            #expect(try cluster.call(node, token: revokedAfter).status == 401)
            #expect(try cluster.call(node, token: revokedBefore).status == 401)
        }
        for load in loads {
            let result = await load.result()
            #expect(result.requests > 100)
            #expect(result.failures == 0, "valid tokens failed during the Redis restart")
            // Nor did a request time out or lose its connection (wrk counts those apart from non-2xx).
            #expect(result.socketErrors == nil, "\(result.socketErrors ?? "")")
        }
    }

    @Test("every /metrics endpoint passes promtool check metrics")
    func promtool() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            Issue.record("promtool is not installed (cluster/setup.sh installs the `prometheus` package)")
            return
        }
        let cluster = try LocalCluster(gateways: 2)
        try cluster.start()
        let token = try cluster.token()
        _ = try cluster.call(1, token: token)
        _ = try cluster.call(2, token: nil)
        _ = try cluster.call(1, "/limited/x", token: token)
        let jti = try #require(LocalCluster.claims(token)["jti"] as? String)
        _ = try cluster.revoke(jti: jti)
        for port in [cluster.gatewayAdminPort(1), cluster.gatewayAdminPort(2), cluster.controlAdminPort] {
            let text = try cluster.metrics(adminPort: port)
            let file = cluster.directory + "/metrics-\(port).txt"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let check = try runCommand("/bin/sh", ["-c", "promtool check metrics < \(file)"])
            #expect(check.status == 0, "promtool on :\(port): \(check.stdout) \(check.stderr)")
            #expect(text.contains("portcullis_"))
        }
    }
}
