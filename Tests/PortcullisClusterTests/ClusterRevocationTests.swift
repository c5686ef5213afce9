import Crypto
import Foundation
@testable import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport
import Synchronization
import Testing

@Suite("cluster state: revocation sync, key sets, failure modes", .serialized)
struct ClusterRevocationTests {
    @Test("every kind of revocation reaches every node by the live event, faster than the periodic check; propagation is recorded")
    func kinds() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-a")
            try await cluster.startGateway(id: "gw-b")

            let byJTI = try cluster.token(jti: "jti-1")
            let bySubject = try cluster.token(sub: "bob")
            let byClient = try cluster.token(clientID: "leaky-app")
            let fresh = try cluster.token(sub: "bob", iat: Int64(Date().timeIntervalSince1970) + 2)  // within the 2 s iat leeway
            #expect(try cluster.statuses(byJTI) == [200, 200])
            let propagationCount = "portcullis_revocation_propagation_seconds_count"
            let countsBefore = try cluster.gateways.map { PrometheusText.sample(try $0.metrics(), propagationCount) ?? 0 }

            let event = try await cluster.revoke(.jti, "jti-1")
            // Every node acknowledged the jti revocation with a latency, which only a live pub/sub
            // event carries (a change found by the periodic check is acknowledged without one),
            // and the latency is below the 200 ms check interval.
            try await eventually("acks recorded") { try await cluster.store.acknowledgements(sequence: event.sequence, epoch: event.epoch).count == 2 }
            let acks = try await cluster.store.acknowledgements(sequence: event.sequence, epoch: event.epoch)
            for (node, ack) in acks {
                let latency = try #require(ack.latencyMicros, "\(node) applied the revocation without the live event")
                #expect(latency < 200_000, "\(node): \(latency) µs")
            }
            // The histogram moved on every node (it exists, at zero, from start-up).
            for (gateway, before) in zip(cluster.gateways, countsBefore) {
                let after = PrometheusText.sample(try gateway.metrics(), propagationCount) ?? 0
                #expect(after > before, "\(propagationCount) \(before) → \(after)")
            }

            let subjectCutoff = try await cluster.revoke(.subject, "bob", until: Int64(Date().timeIntervalSince1970) + 1)
            _ = try await cluster.revoke(.client, "leaky-app", until: Int64(Date().timeIntervalSince1970) + 1)
            try await eventually("all revocations applied") { try cluster.statuses(byJTI) == [401, 401] && cluster.statuses(bySubject) == [401, 401] && cluster.statuses(byClient) == [401, 401] }
            // A subject cut-off does not touch tokens issued after it.
            #expect(try cluster.statuses(fresh) == [200, 200])
            let metrics = try cluster.gateways[0].metrics()
            #expect(metrics.contains("reason=\"revoked\""))
            // The revoked client's token verified, so its refusals are counted under its client id.
            #expect(metrics.contains("client=\"leaky-app\",reason=\"revoked\""))

            // Lifting the subject cut-off lets bob back in.
            _ = try await cluster.lift(subjectCutoff)
            try await eventually("cut-off lifted") { try cluster.statuses(bySubject) == [200, 200] }
        }
    }

    @Test("revoking a key rejects every token it signed")
    func keyRevocation() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-k")
            let token = try cluster.token()
            #expect(try cluster.statuses(token) == [200])
            _ = try await cluster.revoke(.key, "k1", until: Int64(Date().timeIntervalSince1970))
            try await eventually("key revoked") { try cluster.statuses(token) == [401] }
            let other = try cluster.token()
            #expect(try cluster.statuses(other) == [401])
        }
    }

    @Test("gap-free: a node started while revocations are being written ends with all of them")
    func gapFreeConcurrentSync() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            let store = cluster.store
            let writer = Task {
                for index in 0..<400 {
                    _ = try await TestCluster.revoke(store: store, .jti, "gap-\(index)")
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            try await cluster.startGateway(id: "gw-2")
            try await writer.value
            let final = try await cluster.store.currentSequence()
            try await eventually("both nodes applied \(final)") {
                let applied = try await cluster.appliedSequences()
                return applied.count == 2 && applied.values.allSatisfy { $0 == final }
            }
            for index in stride(from: 0, to: 400, by: 37) {
                #expect(try cluster.statuses(try cluster.token(jti: "gap-\(index)")) == [401, 401], "gap-\(index)")
            }
        }
    }

    @Test("a lost pub/sub message is caught by the periodic check")
    func droppedMessage() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-drop")
            // Write the way the control plane does (signed entry and head), but without publishing:
            // as if the message was lost.
            let head = try await cluster.store.heartbeat()
            let now = Int64(Date().timeIntervalSince1970)
            let revocation = Revocation(id: "rev_lost", operation: .add, kind: .jti, value: "lost-jti", issuer: nil, until: now + 600,
                                        createdAtMillis: now * 1000, actor: "test", reason: nil)
            let event = RevocationEvent.signed(revocation, epoch: head.epoch, sequence: head.sequence + 1, mac: cluster.mac)
            _ = try await cluster.client.send("ZADD", RedisArgument(cluster.keys.revocationLog), RedisArgument(event.sequence),
                                              RedisArgument(event.wireText))
            let next = RevocationHead.signed(epoch: head.epoch, sequence: event.sequence, last: event.mac, floor: head.floor,
                                             beat: head.beat + 1, mac: cluster.mac)
            _ = try await cluster.client.send("SET", RedisArgument(cluster.keys.revocationHead), RedisArgument(next.wireText))
            let token = try cluster.token(jti: "lost-jti")
            try await eventually(timeout: .seconds(3), "periodic check applied the unpublished revocation") { try cluster.statuses(token) == [401] }
        }
    }

    @Test("a node started late is not ready until synced, then enforces everything")
    func lateNode() async throws {
        try await withCluster() { cluster in
            for index in 0..<2000 {
                _ = try await cluster.revoke(.jti, "late-\(index)")
            }
            let gateway = try await cluster.startGateway(id: "gw-late")
            #expect(try cluster.statuses(try cluster.token(jti: "late-1999")) == [401])
            #expect(try cluster.statuses(try cluster.token(jti: "late-0")) == [401])
            #expect(try cluster.statuses(try cluster.token(jti: "not-revoked")) == [200])
            #expect(gateway.process.output.contains("revocations synced"))
        }
    }

    @Test("Redis restart: revocations before it stay enforced, new ones arrive after it")
    func redisRestart() async throws {
        try await withCluster(redisPersistence: true) { cluster in
            try await cluster.startGateway(id: "gw-r")
            let before = try cluster.token(jti: "before-restart")
            _ = try await cluster.revoke(.jti, "before-restart")
            try await eventually("applied") { try cluster.statuses(before) == [401] }

            await cluster.redis.kill()
            let valid = try cluster.token()
            // Redis down: valid tokens still pass, the revoked one stays rejected.
            for _ in 0..<5 {
                #expect(try cluster.statuses(valid) == [200])
                #expect(try cluster.statuses(before) == [401])
            }
            try await cluster.redis.restart()
            let after = try cluster.token(jti: "after-restart")
            try await eventually(timeout: .seconds(10), "write accepted after restart") { (try? await cluster.revoke(.jti, "after-restart")) != nil }
            try await eventually(timeout: .seconds(5), "resynced after Redis returned") { try cluster.statuses(after) == [401] }
            #expect(try cluster.statuses(before) == [401])
        }
    }

    @Test("Redis losing its data does not make a node forget revocations")
    func redisDataLoss() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-loss")
            let token = try cluster.token(jti: "keep-me")
            _ = try await cluster.revoke(.jti, "keep-me")
            try await eventually("applied") { try cluster.statuses(token) == [401] }
            _ = try await cluster.client.send("FLUSHALL")
            _ = try await cluster.revoke(.jti, "after-flush")
            try await eventually("merged") { try cluster.statuses(try cluster.token(jti: "after-flush")) == [401] }
            #expect(try cluster.statuses(token) == [401])
            #expect(cluster.gateways[0].process.output.contains("history changed"))
        }
    }

    @Test("fail closed: with max_staleness, a node cut off from Redis serves until its state is that old, then answers 503, and recovers")
    func failClosed() async throws {
        try await withCluster(redisPersistence: true) { cluster in
            cluster.startBeating()
            let gateway = try await cluster.startGateway(id: "gw-stale", staleness: "2s")
            let token = try cluster.token()
            #expect(try cluster.statuses(token) == [200])
            // The node last confirmed its state at most a check interval and a beat (~400 ms)
            // before Redis went: it serves at least until 1.6 s after, and refuses from 2 s after.
            let cut = ContinuousClock.now
            await cluster.redis.kill()
            var served = 0
            while ContinuousClock.now - cut < .milliseconds(1200) {
                let statuses = try cluster.statuses(token)
                #expect(statuses == [200], "refused \(ContinuousClock.now - cut) after losing Redis, before max_staleness")
                served += 1
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(served >= 5)
            #expect(try gateway.readiness().status == 200)
            var refusedAfter: Duration?
            try await eventually(timeout: .seconds(5), "fails closed") {
                guard try cluster.statuses(token) == [503] else { return false }
                refusedAfter = ContinuousClock.now - cut
                return true
            }
            #expect(refusedAfter.map { $0 >= .milliseconds(1500) } == true, "failed closed \(refusedAfter.map { "\($0)" } ?? "never") after losing Redis")
            let metrics = try gateway.metrics()
            #expect(metrics.contains("portcullis_redis_connected 0"))
            #expect(try gateway.readiness().status == 503)
            try await cluster.redis.restart()
            try await eventually(timeout: .seconds(5), "serves again") { try cluster.statuses(token) == [200] }
        }
    }

    @Test("ready_requires_redis: /readyz answers 503 while Redis is unreachable, and 200 once it is back; without it the node stays ready; both keep serving")
    func readyRequiresRedis() async throws {
        try await withCluster(redisPersistence: true) { cluster in
            let strict = try await cluster.startGateway(id: "gw-strict", readyRequiresRedis: true)
            let lenient = try await cluster.startGateway(id: "gw-lenient")
            let token = try cluster.token()
            #expect(try strict.readiness().status == 200)
            await cluster.redis.kill()
            try await eventually(timeout: .seconds(5), "not ready without Redis") {
                let readiness = try strict.readiness()
                return readiness.status == 503 && readiness.text.contains("Redis unreachable")
            }
            for _ in 0..<5 {
                #expect(try lenient.readiness().status == 200)
                // Not ready is a signal to the load balancer; the node still serves from its last state.
                #expect(try cluster.statuses(token) == [200, 200])
                try await Task.sleep(for: .milliseconds(100))
            }
            try await cluster.redis.restart()
            try await eventually(timeout: .seconds(10), "ready again once Redis is back") { try strict.readiness().status == 200 }
        }
    }

    @Test("key sets from the cluster: rotation under load fails no request; a forged record is ignored")
    func keyRotation() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            let keyA = cluster.signer
            let keyB = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k2")
            let jwks = TestCluster.jwks
            try await publisher.publish(issuer: TestCluster.issuer, jwks: jwks([keyA]))
            let gateway = try await cluster.startGateway(id: "gw-rot")
            let tokenA = try cluster.token(signer: keyA)
            let tokenB = try cluster.token(signer: keyB)
            #expect(try cluster.statuses(tokenA) == [200])

            let failures = LockedCounter()
            let load = Task.detached {
                let client = try gateway.client()
                var useB = false
                for index in 0..<600 {
                    if index == 200 { useB = true }
                    let status = try client.request("GET", "/x", headers: [("Authorization", "Bearer \(useB ? tokenB : tokenA)")]).status
                    if status != 200 { failures.increment() }
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            // Publish A+B before any B token is used, then retire A.
            try await publisher.publish(issuer: TestCluster.issuer, jwks: jwks([keyA, keyB]))
            try await load.value
            #expect(failures.value == 0)
            try await publisher.publish(issuer: TestCluster.issuer, jwks: jwks([keyB]))
            try await eventually("A retired") { try cluster.statuses(tokenA) == [401] }

            // A Redis writer without the secret cannot inject a key.
            let evil = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "evil")
            let forgedJWKS = jwks([keyB, evil])
            _ = try await cluster.client.send("HSET", RedisArgument(cluster.keys.keySet(TestCluster.issuer)), "jwks", RedisArgument(forgedJWKS),
                                              "version", "ffffffffffffffff")
            _ = try await cluster.client.send("PUBLISH", RedisArgument(cluster.keys.keySetChannel), RedisArgument("ffffffffffffffff \(TestCluster.issuer)"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try cluster.statuses(try cluster.token(signer: evil)) == [401])
            #expect(try cluster.statuses(tokenB) == [200])
            #expect(gateway.process.output.contains("MAC does not verify"))
        }
    }
}

extension ClusterRevocationTests {
    /// The build before parsed every later record under the start's settings, and a reload put a
    /// set of the HMAC secrets alone in place of the cluster's: right after the reload ES256
    /// tokens failed, and once the next record came the leaked secret was accepted again, the
    /// new one refused, and the added algorithm never applied (an attacker review).
    @Test("a reload of an issuer whose keys come from the cluster parses the record it holds under the new settings: a replaced HMAC secret and an added algorithm hold, also after the next record")
    func reloadReparsesClusterKeySet() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            let es384 = JWTSigner(key: try SigningKey.generate(.ES384), keyID: "k384")
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([cluster.signer, es384]))
            let leaked = SymmetricKey(size: .bits256), fresh = SymmetricKey(size: .bits256)
            func text(_ key: SymmetricKey) -> String { key.withUnsafeBytes { Base64URL.encode(Array($0)) } }
            func config(secret: SymmetricKey, algorithms: String, port: Int, admin: Int) -> String {
                cluster.gatewayConfig(port: port, adminPort: admin, nodeID: "gw-reload").replacingOccurrences(
                    of: "    algorithms: [ES256]\n",
                    with: "    algorithms: \(algorithms)\n    hmac_secrets: [{kid: h1, secret_base64url: \(text(secret)), alg: HS256}]\n")
            }
            let gateway = try await GatewayProcess.start { port, admin, _ in config(secret: leaked, algorithms: "[ES256, HS256]", port: port, admin: admin) }
            defer { Task { await gateway.stop() } }
            func hmacToken(_ key: SymmetricKey) throws -> String {
                try JWTSigner(key: .hmac(key, .HS256), keyID: "h1").sign(claims: [
                    "iss": .string(TestCluster.issuer), "aud": .string(TestCluster.audience), "sub": .string("u"),
                    "iat": .integer(Int64(Date().timeIntervalSince1970) - 5), "exp": .integer(Int64(Date().timeIntervalSince1970) + 600),
                ])
            }
            func status(_ token: String) throws -> Int {
                try gateway.request("GET", "/x", headers: [("Authorization", "Bearer \(token)")]).status
            }
            let es256 = try cluster.token(), es384Token = try cluster.token(signer: es384)
            let leakedToken = try hmacToken(leaked), freshToken = try hmacToken(fresh)
            try await eventually("the cluster's set") { try status(es256) == 200 }
            #expect(try status(leakedToken) == 200)
            #expect(try status(freshToken) == 401)
            #expect(try status(es384Token) == 401)

            try config(secret: fresh, algorithms: "[ES256, ES384, HS256]", port: gateway.port, admin: gateway.adminPort)
                .write(toFile: gateway.configFile, atomically: true, encoding: .utf8)
            gateway.process.signal(SIGHUP)
            try await eventually("the reload") { gateway.process.output.contains("configuration reloaded") }
            func expectNewSettings(_ when: String) throws {
                #expect(try status(es256) == 200, "ES256 \(when)")
                #expect(try status(es384Token) == 200, "the added algorithm \(when)")
                #expect(try status(freshToken) == 200, "the new secret \(when)")
                #expect(try status(leakedToken) == 401, "the replaced secret \(when)")
            }
            try expectNewSettings("after the reload")
            // The next record is parsed under the new settings too.
            let another = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k3")
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([cluster.signer, es384, another]))
            try await eventually("the next record") { try status(try cluster.token(signer: another)) == 200 }
            try expectNewSettings("after the next record")
        }
    }
}

final class LockedCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}


