import Foundation
import Logging
@testable import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// The attacker here can write anything to Redis but does not hold the cluster secret. Each test
/// performs one attack against real gateway processes and asserts that no revoked token passes
/// on any node, and that the nodes report the tampering (counter and an error line naming the key).
@Suite("Redis writer without the cluster secret", .serialized)
struct RedisTamperingTests {
    /// Revokes 5 jtis, a subject and a client, and waits until every gateway refuses them all.
    static func revokeAndApply(_ cluster: TestCluster) async throws -> [String] {
        var tokens: [String] = []
        for index in 0..<5 {
            let jti = "victim-\(index)-\(UUID().uuidString)"
            tokens.append(try cluster.token(jti: jti))
            _ = try await cluster.revoke(.jti, jti)
        }
        tokens.append(try cluster.token(sub: "mallory"))
        _ = try await cluster.revoke(.subject, "mallory", until: Int64(Date().timeIntervalSince1970) + 1)
        tokens.append(try cluster.token(clientID: "leaked-client"))
        _ = try await cluster.revoke(.client, "leaked-client", until: Int64(Date().timeIntervalSince1970) + 1)
        try await eventually("every node refuses every revoked token") {
            try tokens.allSatisfy { try cluster.statuses($0).allSatisfy { $0 == 401 } }
        }
        return tokens
    }

    /// Holds for `seconds`: every node keeps refusing every token (several check intervals pass).
    static func expectStillRevoked(_ cluster: TestCluster, _ tokens: [String], seconds: Int = 2) async throws {
        for _ in 0..<(seconds * 4) {
            for token in tokens {
                let statuses = try cluster.statuses(token)
                #expect(statuses.allSatisfy { $0 == 401 }, "a revoked token passed: \(statuses)")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Every gateway counted tampering on `key` and logged a line naming it.
    static func expectReported(_ cluster: TestCluster, key: String) async throws {
        try await eventually("every node reported tampering on \(key)") {
            try cluster.gateways.allSatisfy { gateway in
                let counted = try gateway.metrics().split(separator: "\n").contains {
                    $0.hasPrefix("portcullis_cluster_tampering_total{key=\"\(TamperingAlarm.family(key))\"}")
                }
                return counted && gateway.process.output.contains("Redis tampering") && gateway.process.output.contains("portcullis:" + key)
            }
        }
    }

    @Test("the reported attack: wiping the log and forging rev:trimmed and rev:seq, twice, makes no node forget")
    func wipeAndForgeCounters() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            try await cluster.startGateway(id: "gw-3")
            let tokens = try await Self.revokeAndApply(cluster)
            for _ in 0..<2 {
                for command: [RedisArgument] in [
                    ["DEL", "portcullis:rev:log"], ["DEL", "portcullis:rev:jti"], ["SET", "portcullis:rev:trimmed", "9000000000000000000"],
                    ["INCR", "portcullis:rev:seq"], ["DEL", "portcullis:rev:sub"], ["DEL", "portcullis:rev:client"],
                ] { _ = try await cluster.client.send(command) }
                try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
            }
            try await Self.expectReported(cluster, key: "rev:log")
            // New revocations still reach every node after the wipe.
            let later = try cluster.token(jti: "after-wipe")
            _ = try await cluster.revoke(.jti, "after-wipe")
            try await eventually("a revocation after the wipe applied everywhere") { try cluster.statuses(later) == [401, 401, 401] }
            try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
        }
    }

    @Test("a forged, rolled-back or deleted head, and a forged epoch, make no node forget; the head is reported")
    func forgedHead() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let oldHead = try #require(try await cluster.store.head())
            let tokens = try await Self.revokeAndApply(cluster)
            // Garbage, an old signed head (rollback), a head "from the future" without a MAC.
            _ = try await cluster.client.send("SET", "portcullis:rev:head", "head3 9999999999999-0000000000000000 99999 forged 0 99999 forged")
            try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
            try await Self.expectReported(cluster, key: "rev:head")
            _ = try await cluster.client.send("SET", "portcullis:rev:head", RedisArgument(oldHead.wireText))
            _ = try await cluster.client.send("SET", "portcullis:rev:epoch", "forged-epoch")
            try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
            #expect(cluster.gateways.allSatisfy { $0.process.output.contains("the head went back") })
            _ = try await cluster.client.send("DEL", "portcullis:rev:head")
            try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
            // The control plane answers a head it cannot continue with a new epoch; nodes merge into it.
            _ = try await cluster.client.send("SET", "portcullis:rev:head", "garbage")
            let later = try cluster.token(jti: "new-epoch")
            _ = try await cluster.revoke(.jti, "new-epoch")
            try await eventually("nodes followed the new epoch") { try cluster.statuses(later) == [401, 401] }
            try await Self.expectStillRevoked(cluster, tokens, seconds: 1)
        }
    }

    @Test("rewritten log entries (unsigned, or signed ones moved to another sequence) are refused and reported")
    func rewrittenEntries() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let tokens = try await Self.revokeAndApply(cluster)
            let head = try #require(try await cluster.store.head())
            // A lift without a MAC, placed where the next change goes, and announced.
            let forged = "\(head.sequence + 1) 0 {\"id\":\"rev_x\",\"op\":\"delete\",\"kind\":\"subject\",\"value\":\"mallory\",\"until\":0,\"created_ms\":0,\"actor\":\"x\",\"lifts\":\"rev_any\",\"epoch\":\"\(head.epoch)\",\"mac\":\"AAAA\"}"
            _ = try await cluster.client.send("ZADD", "portcullis:rev:log", RedisArgument(head.sequence + 1), RedisArgument(forged))
            _ = try await cluster.client.send("PUBLISH", "portcullis:rev:events", RedisArgument(forged))
            // A real signed entry (the first jti) moved to another score.
            let first = try #require(try await cluster.store.list(kind: .jti, limit: 1).first)
            _ = try await cluster.client.send("ZADD", "portcullis:rev:log", RedisArgument(head.sequence + 2), RedisArgument(first.wireText))
            try await Self.expectStillRevoked(cluster, tokens)
            try await Self.expectReported(cluster, key: "rev:events")
            #expect(cluster.gateways.allSatisfy { $0.process.output.contains("MAC does not verify") })
        }
    }

    @Test("revocation events published on the live channel without a valid MAC are ignored and counted; the real change at their place still applies")
    func forgedLiveEvent() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let victim = try cluster.token(sub: "victim", jti: "victim-jti")
            #expect(try cluster.statuses(victim) == [200, 200])
            let head = try #require(try await cluster.store.head())
            let tampering = "portcullis_cluster_tampering_total{key=\"rev:events\"}"
            let applied = "portcullis_revocation_applied_sequence"
            let before = try cluster.gateways.map { try $0.metrics() }

            // Well-formed events for the next place in this history, signed with another secret
            // (one a jti revocation, one a subject cut-off), and one whose MAC is not base64url.
            let now = Int64(Date().timeIntervalSince1970)
            let forger = ClusterMAC(secret: Array(repeating: UInt8(9), count: 32), cluster: "portcullis:")
            let jti = Revocation(id: "rev_forged1", operation: .add, kind: .jti, value: "victim-jti", issuer: nil, until: now + 600,
                                 createdAtMillis: now * 1000, actor: "mallory", reason: nil)
            let subject = Revocation(id: "rev_forged2", operation: .add, kind: .subject, value: "victim", issuer: nil, until: now + 1,
                                     createdAtMillis: now * 1000, actor: "mallory", reason: nil)
            var messages = [jti, subject].map {
                RevocationEvent.signed($0, epoch: head.epoch, sequence: head.sequence + 1, mac: forger).wireText
            }
            messages.append(messages[0].replacingOccurrences(of: "\"mac\":\"", with: "\"mac\":\"!!"))
            for message in messages {
                _ = try await cluster.client.send("PUBLISH", RedisArgument(cluster.keys.revocationChannel), RedisArgument(message))
            }

            // Ignored: the token keeps passing over several check intervals, no node moves its sequence…
            for _ in 0..<6 {
                #expect(try cluster.statuses(victim) == [200, 200])
                try await Task.sleep(for: .milliseconds(150))
            }
            for (gateway, earlier) in zip(cluster.gateways, before) {
                let text = try gateway.metrics()
                #expect(PrometheusText.sample(text, applied) == PrometheusText.sample(earlier, applied))
                // …and counted, once for each forged event.
                let counted = (PrometheusText.sample(text, tampering) ?? 0) - (PrometheusText.sample(earlier, tampering) ?? 0)
                #expect(counted == Double(messages.count), "\(tampering) moved by \(counted)")
                #expect(gateway.process.output.contains("MAC does not verify"))
            }
            // The genuine change written at that place is applied as usual.
            let genuine = try await cluster.revoke(.jti, "victim-jti")
            #expect(genuine.sequence == head.sequence + 1)
            try await eventually("the genuine revocation applied") { try cluster.statuses(victim) == [401, 401] }
        }
    }

    /// The build before emptied the log at a new epoch: a node cut off while a change was
    /// written merged into the new, empty history, reported itself current and admitted the
    /// revoked token for good — as did every node started afterwards, and the admin API no
    /// longer listed the change (an attacker review).
    @Test("a node cut off while a subject is revoked, then a head garbled by a Redis writer: the new epoch carries the old log's signed changes, so the node refuses the subject's token once it is back, and so does a node started afterwards")
    func newEpochCarriesChanges() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let earlier = try cluster.token(jti: "before-the-cut")
            _ = try await cluster.revoke(.jti, "before-the-cut")
            try await eventually("applied everywhere") { try cluster.statuses(earlier) == [401, 401] }
            // gw-2 is paused (a GC pause, a partition) and its subscription cut, so no message
            // waits for it in its socket.
            let cutOff = cluster.gateways[1]
            cutOff.process.signal(SIGSTOP)
            _ = try await cluster.client.send("CLIENT", "KILL", "TYPE", "pubsub")
            let victim = try cluster.token(sub: "victim")
            _ = try await cluster.revoke(.subject, "victim", until: Int64(Date().timeIntervalSince1970) + 1)
            try await eventually("gw-1 refuses the victim") {
                try cluster.gateways[0].request("GET", "/x", headers: [("Authorization", "Bearer \(victim)")]).status == 401
            }
            // The writer garbles the head; the next write starts a new epoch.
            _ = try await cluster.client.send("SET", "portcullis:rev:head", "garbage")
            let after = try await cluster.revoke(.jti, "after-the-reset")
            #expect(after.sequence == 3, "the two earlier changes were carried into the new epoch ahead of it")
            cutOff.process.signal(SIGCONT)
            try await eventually(timeout: .seconds(15), "gw-2 follows the new epoch") {
                try cluster.statuses(try cluster.token(jti: "after-the-reset")) == [401, 401]
            }
            #expect(try cluster.statuses(victim) == [401, 401], "the cut-off node admitted the revoked subject")
            #expect(try cluster.statuses(earlier) == [401, 401])
            try await cluster.startGateway(id: "gw-3")
            #expect(try cluster.statuses(victim) == [401, 401, 401], "a node started afterwards admitted the revoked subject")
            try await Self.expectStillRevoked(cluster, [victim, earlier], seconds: 1)
        }
    }

    /// The carry is written in pieces bounded by tokens; a piece cut short must not lose the rest
    /// (the first piece already emptied the old log), and a prune worked out in the old epoch must
    /// not raise the new one's floor or remove its entries (code review).
    @Test("a new epoch carries a log that takes several writes; a floor worked out in the old epoch is not raised in the new one")
    func carryAcrossWritesAndOldFloor() async throws {
        try await withCluster() { cluster in
            let now = Int64(Date().timeIntervalSince1970)
            let batches = (0..<14).map { index in
                Revocation(id: "batch-\(index)", operation: .add, kind: .jti, value: "b\(index)-0", issuer: nil, until: now + 3600,
                           createdAtMillis: now * 1000, actor: "test", reason: nil,
                           batch: (1..<1000).map { Revocation.Token(jti: "b\(index)-\($0)", expiresAt: now + 3600) })
            }
            #expect(RevocationWriter.carryChunk(batches.map { RevocationWriter.Change(revocation: $0, pruneAt: "+inf") }).count == 12,
                    "12 batches of 1 000 tokens fill one write")
            let written = try await cluster.store.writeBatch(batches)
            let oldEpoch = try #require(written.last?.epoch)
            _ = try await cluster.client.send("SET", "portcullis:rev:head", "garbage")
            let after = try await cluster.revoke(.jti, "after-the-reset")
            #expect(after.epoch != oldEpoch && after.sequence == 15, "\(after.sequence)")
            let carried = try await cluster.store.list(kind: .jti, limit: 100)
            #expect(carried.count == 15 && Set(carried.map(\.epoch)) == [after.epoch])
            #expect(carried.reduce(0) { $0 + $1.revocation.count } == 14 * 1000 + 1)
            // A prune that read sequences of the old epoch: nothing raised in the new one.
            let reader = RevocationLogReader(client: cluster.client, keys: cluster.keys, mac: cluster.mac, alarm: cluster.alarm)
            let writer = RevocationWriter(client: cluster.client, keys: cluster.keys, mac: cluster.mac, reader: reader, logger: Logger(label: "test"),
                                          knownPosition: { (nil, -1) })
            #expect(try await writer.raiseFloor(to: 10, epoch: oldEpoch) == false)
            #expect(try await cluster.store.head()?.floor == 0)
            #expect(try await writer.raiseFloor(to: 2, epoch: after.epoch) == true)
            #expect(try await cluster.store.head()?.floor == 2)
        }
    }

    @Test("a message mixing an older history's signed entries with a current one moves no node past changes it has not applied")
    func mixedEpochMessage() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            var old: [RevocationEvent] = []
            for index in 0..<3 { old.append(try await cluster.revoke(.jti, "old-\(index)")) }
            // A new history (the control plane answers a head it cannot continue with a new epoch).
            _ = try await cluster.client.send("SET", "portcullis:rev:head", "garbage")
            let first = try await cluster.revoke(.jti, "new-0")
            #expect(first.epoch != old[0].epoch)
            try await eventually("the node follows the new history") { try cluster.statuses(try cluster.token(jti: "new-0")) == [401] }
            // The attack: the old history's sequences 2 and 3, then the new history's 1, in one message.
            let message = [old[1].wireText, old[2].wireText, first.wireText].joined(separator: "\n")
            _ = try await cluster.client.send("PUBLISH", "portcullis:rev:events", RedisArgument(message))
            try await Task.sleep(for: .milliseconds(300))
            // The new history's next changes must still apply.
            let next = try await cluster.revoke(.jti, "new-1")
            let third = try await cluster.revoke(.jti, "new-2")
            try await eventually("the next changes applied") {
                try cluster.statuses(try cluster.token(jti: "new-1")) == [401] && cluster.statuses(try cluster.token(jti: "new-2")) == [401]
            }
            try await eventually("acknowledged exactly as far as applied") { try await cluster.appliedSequences()["gw-1"] == third.sequence }
            #expect(next.sequence == first.sequence + 1)
            try await Self.expectReported(cluster, key: "rev:events")
        }
    }

    @Test("a signed change whose write failed, replayed to the nodes, never stands in for the change committed at its place")
    func failedWriteReplayed() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let head = try #require(try await cluster.store.head())
            // Make the next write fail after it was signed (a key of the wrong type), and keep what
            // it signed: what an attacker watching Redis (MONITOR) sees of the refused write.
            _ = try await cluster.client.send("SET", RedisArgument(cluster.keys.revocationExpiry), "wrong type")
            let now = Int64(Date().timeIntervalSince1970)
            let refused = Revocation(id: "rev_refused", operation: .add, kind: .jti, value: "decoy", issuer: nil, until: now + 600,
                                     createdAtMillis: now * 1000, actor: "ops", reason: nil)
            await #expect(throws: (any Error).self) { try await cluster.store.write(refused) }
            _ = try await cluster.client.send("DEL", RedisArgument(cluster.keys.revocationExpiry))
            let captured = RevocationEvent.signed(refused, epoch: head.epoch, sequence: head.sequence + 1, mac: cluster.mac)
            // The attack: the refused change published as if committed; then the nodes' subscriptions
            // are cut while the real change is written at the same place, so they miss it live.
            _ = try await cluster.client.send("PUBLISH", "portcullis:rev:events", RedisArgument(captured.wireText))
            try await eventually("the nodes took the decoy") { try await cluster.appliedSequences().values.allSatisfy { $0 == head.sequence + 1 } }
            _ = try await cluster.client.send("CLIENT", "KILL", "TYPE", "pubsub")
            let real = try await cluster.revoke(.jti, "the-real-one")
            #expect(real.sequence == captured.sequence)
            // Every node finds out from the signed head and applies the change committed there.
            let token = try cluster.token(jti: "the-real-one")
            try await eventually(timeout: .seconds(5), "the committed change applied everywhere") { try cluster.statuses(token) == [401, 401] }
            try await Self.expectReported(cluster, key: "rev:log")
            // And their acknowledgements of that place now name the committed change.
            try await eventually("acknowledgements name the committed change") {
                let head = try await cluster.store.head()
                let live = try await Membership(client: cluster.client, keys: cluster.keys, mac: cluster.mac, alarm: cluster.alarm).liveNodes()
                var confirmed = 0
                for node in live { if let ack = node.ack, await cluster.store.confirms(ack, real, head: head) { confirmed += 1 } }
                return confirmed == 2
            }
        }
    }

    /// The build before read the node set whole at every heartbeat (SMEMBERS, then a lookup for
    /// each id in one pipeline) on the node's shared Redis connection: 300 000 ids from one
    /// `SADD` held it past its command timeout every time, so they were never pruned, and every
    /// node stalled (an attacker review, with the gateways' own Redis credential).
    @Test("300 000 ids a Redis writer adds to the node set are read at most 10 000 a heartbeat and pruned as read: the set shrinks back to the live nodes, which keep applying revocations and report the set")
    func nodeSetFlood() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            _ = try await cluster.client.send("EVAL", "for i = 1, 300000 do redis.call('SADD', KEYS[1], 'junk-' .. i) end return 0", "1",
                                              RedisArgument(cluster.keys.nodes))
            // And one id whose record key is a set: it must not fail the read of the others.
            _ = try await cluster.client.send("SADD", RedisArgument(cluster.keys.node("junk-set")), "x")
            _ = try await cluster.client.send("SADD", RedisArgument(cluster.keys.nodes), "junk-set")
            let token = try cluster.token(jti: "after-the-flood")
            _ = try await cluster.revoke(.jti, "after-the-flood")
            try await eventually(timeout: .seconds(10), "the revocation applied on both nodes") { try cluster.statuses(token) == [401, 401] }
            try await eventually(timeout: .seconds(60), "the junk ids pruned") {
                (try await cluster.client.send("SCARD", RedisArgument(cluster.keys.nodes)).int ?? 0) <= 2
            }
            try await Self.expectReported(cluster, key: "nodes")
            let live = try await Membership(client: cluster.client, keys: cluster.keys, mac: cluster.mac, alarm: cluster.alarm).liveNodes()
            #expect(live.map(\.id) == ["gw-1", "gw-2"])
        }
    }

    /// A bypass review: a node set holding more ids than a heartbeat reads hid the live nodes
    /// beyond them, and each gateway took the nodes it missed as gone: its share of a cluster
    /// rate limit grew as if it were alone.
    @Test("while a Redis writer keeps more ids in the node set than a heartbeat reads, no gateway counts fewer live gateways than it knew: the live-node gauge stays at 2 on both, and the read reports itself incomplete")
    func hiddenNodesAreStillCounted() async throws {
        try await withCluster(rateLimit: 10) { cluster in
            let gateways = [try await cluster.startGateway(id: "gw-1"), try await cluster.startGateway(id: "gw-2")]
            func counts() throws -> [String] {
                try gateways.map { gateway in
                    try gateway.metrics().split(separator: "\n").first { $0.hasPrefix("portcullis_ratelimit_live_nodes ") }.map(String.init) ?? "-"
                }
            }
            let two = ["portcullis_ratelimit_live_nodes 2.0", "portcullis_ratelimit_live_nodes 2.0"]
            try await eventually("both count two") { try counts() == two }
            let nodes = RedisArgument(cluster.keys.nodes)
            let client = cluster.client
            let attacker = Task {
                var round = 0
                while !Task.isCancelled {
                    round += 1
                    _ = try? await client.send("EVAL", "for i = 1, 25000 do redis.call('SADD', KEYS[1], ARGV[1] .. i) end return 0", "1",
                                                       nodes, RedisArgument("junk-\(round)-"))
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            let membership = Membership(client: cluster.client, keys: cluster.keys, mac: cluster.mac, alarm: cluster.alarm)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await membership.liveNodeScan().complete == false)
            var seen: Set<[String]> = []
            for _ in 0..<12 {
                seen.insert(try counts())
                try await Task.sleep(for: .milliseconds(250))
            }
            attacker.cancel()
            _ = await attacker.value
            #expect(seen == [two], "the gateways counted \(seen)")
            try await eventually(timeout: .seconds(60), "the junk ids pruned") { try await membership.liveNodeScan().complete }
        }
    }

    /// The build before read every member at the head's sequence on every check: 100 000
    /// unsigned copies of the entry there took each check seconds, past `max_staleness`, on
    /// every node (an attacker review, with write rights on the log).
    @Test("100 000 unsigned copies of the head's entry a Redis writer adds at its sequence cost each node's check at most 66 reads: the copies counted as tampering stay in the hundreds, not the hundreds of thousands")
    func junkAtTheHeadsSequenceIsReadBounded() async throws {
        try await withCluster() { cluster in
            cluster.startBeating()
            let gateway = try await cluster.startGateway(id: "gw-1")
            let event = try await cluster.revoke(.jti, "before-the-junk")
            try await eventually("applied") { try cluster.statuses(try cluster.token(jti: "before-the-junk")) == [401] }
            // Copies of the signed entry, each revoking another jti (unsigned).
            let script = """
            local m = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[2])[1]
            for i = 1, tonumber(ARGV[1]), 2000 do
              local t = {}
              for j = i, math.min(i + 1999, tonumber(ARGV[1])) do
                t[#t + 1] = ARGV[2]
                t[#t + 1] = string.gsub(m, 'before%-the%-junk', 'junk-' .. j, 1)
              end
              redis.call('ZADD', KEYS[1], unpack(t))
            end
            return redis.call('ZCOUNT', KEYS[1], ARGV[2], ARGV[2])
            """
            let count = try await cluster.client.send("EVAL", RedisArgument(script), "1", RedisArgument(cluster.keys.revocationLog), "100000",
                                                      RedisArgument(event.sequence)).int
            #expect(count == 100_001)
            try await Task.sleep(for: .seconds(3))
            let counted = try gateway.metrics().split(separator: "\n").first { $0.hasPrefix("portcullis_cluster_tampering_total{key=\"rev:log\"}") }
                .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            // Checks every 200 ms for 3 s, each reading at most 66 members.
            #expect(counted > 0 && counted < 66 * 20, "\(counted) copies counted")
            #expect(gateway.process.isRunning)
        }
    }

    @Test("an old signed lift replayed under a new sequence does not lift a later cut-off of the same subject")
    func replayedLift() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            try await cluster.startGateway(id: "gw-2")
            let first = try await cluster.revoke(.subject, "erin", until: Int64(Date().timeIntervalSince1970) - 60)
            let lift = try await cluster.lift(first)
            _ = try await cluster.revoke(.subject, "erin", until: Int64(Date().timeIntervalSince1970) + 1)
            let token = try cluster.token(sub: "erin")
            try await eventually("the later cut-off applied") { try cluster.statuses(token) == [401, 401] }
            // The attack: the signed lift re-published and re-logged under the next sequence number,
            // and also as it was (its own, old sequence).
            let head = try #require(try await cluster.store.head())
            var moved = lift
            moved.sequence = head.sequence + 1
            _ = try await cluster.client.send("ZADD", "portcullis:rev:log", RedisArgument(moved.sequence), RedisArgument(moved.wireText))
            _ = try await cluster.client.send("PUBLISH", "portcullis:rev:events", RedisArgument(moved.wireText))
            _ = try await cluster.client.send("PUBLISH", "portcullis:rev:events", RedisArgument(lift.wireText))
            try await Self.expectStillRevoked(cluster, [token])
            try await Self.expectReported(cluster, key: "rev:events")
        }
    }

    @Test("a session revocation's log entry is pruned once its until plus the grace has passed, as a jti's is; one still in force stays")
    func sessionEntriesPruned() async throws {
        try await withCluster() { cluster in
            let now = Int64(Date().timeIntervalSince1970)
            let ended = try await cluster.revoke(.session, "fam_short", until: now + 600, issuer: TestCluster.issuer)
            let live = try await cluster.revoke(.session, "fam_long", until: now + 3600)
            #expect(try await cluster.store.prune(now: now + 600 + RevocationSet.expiryGrace - 1) == 0)
            #expect(try await cluster.store.prune(now: now + 1200) == 1)
            #expect(try await cluster.store.get(id: ended.revocation.id) == nil)
            #expect(try await cluster.store.get(id: live.revocation.id) != nil)
            #expect(try #require(try await cluster.store.head()).floor == ended.sequence)
        }
    }

    @Test("forged prune nominations remove nothing in force; a genuine prune raises the floor and a late node still syncs")
    func forgedPruneNominations() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            let now = Int64(Date().timeIntervalSince1970)
            let shortLived = try await cluster.revoke(.jti, "short", until: now + 600)
            let longLived = try await cluster.revoke(.jti, "long", until: now + 3600)
            let cutoff = try await cluster.revoke(.subject, "frank", until: now + 1)
            let tokens = [try cluster.token(jti: "long"), try cluster.token(sub: "frank")]
            try await eventually("applied") { try tokens.allSatisfy { try cluster.statuses($0) == [401] } }
            // The attack: nominate entries still in force (and the head's own) for pruning.
            for event in [longLived, cutoff] {
                _ = try await cluster.client.send("ZADD", RedisArgument(cluster.keys.revocationExpiry), "0", RedisArgument(event.sequence))
            }
            // Twenty minutes on, only the short-lived token's entry is due by its signed content.
            #expect(try await cluster.store.prune(now: now + 1200) == 1)
            let head = try #require(try await cluster.store.head())
            #expect(head.floor == shortLived.sequence)
            #expect(try await cluster.store.get(id: longLived.revocation.id) != nil)
            #expect(try await cluster.store.get(id: cutoff.revocation.id) != nil)
            #expect(try await cluster.store.get(id: shortLived.revocation.id) == nil)
            // The running node keeps what it applied; a node starting now syncs past the pruned hole.
            #expect(try cluster.statuses(try cluster.token(jti: "short")) == [401])
            try await cluster.startGateway(id: "gw-late")
            #expect(try tokens.allSatisfy { try cluster.statuses($0) == [401, 401] })
            try await eventually("the late node acknowledged the head") {
                try await cluster.appliedSequences()["gw-late"] == head.sequence
            }
        }
    }

    @Test("a key revocation limited to one issuer leaves other issuers' tokens with that kid alone, on the gateway too")
    func keyRevocationScope() async throws {
        try await withCluster() { cluster in
            try await cluster.startGateway(id: "gw-1")
            let token = try cluster.token()
            _ = try await cluster.revoke(.key, "k1", until: Int64(Date().timeIntervalSince1970), issuer: "https://another-issuer.test")
            let marker = try cluster.token(jti: "marker")
            _ = try await cluster.revoke(.jti, "marker")
            try await eventually("applied") { try cluster.statuses(marker) == [401] }
            #expect(try cluster.statuses(token) == [200])
            _ = try await cluster.revoke(.key, "k1", until: Int64(Date().timeIntervalSince1970), issuer: TestCluster.issuer)
            try await eventually("the issuer's own key revocation applies") { try cluster.statuses(token) == [401] }
        }
    }

    @Test("a node started before the cluster's first revocation follows the new history without an error")
    func firstHistory() async throws {
        let cluster = try await TestCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-early")
            let token = try cluster.token(jti: "first")
            _ = try await cluster.revoke(.jti, "first")
            try await eventually("the first revocation applied") { try cluster.statuses(token) == [401] }
            try await Task.sleep(for: .milliseconds(500))
            #expect(!gateway.process.output.contains("history changed"))
            #expect(!gateway.process.output.contains("error"))
        }
    }

    @Test("a bounded read of the log returns members in order, leaves and counts those over a change's bound, stops before its byte budget, goes on from the sequence it stopped inside (or past it when that sequence filled the read) and reads by rank from the end")
    func logRangeIsBoundedInRedis() async throws {
        try await withCluster() { cluster in
            let key = RedisArgument("test:log")
            func member(_ prefix: String, _ size: Int) -> RedisArgument {
                RedisArgument(bytes: Array(prefix.utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: size - prefix.utf8.count))
            }
            _ = try await cluster.client.send("ZADD", key, "1", "a1", "2", "b2", "2", member("~big", RevocationEvent.maxLineBytes + 1),
                                              "3", member("~x1", 8 << 20), "3", member("~x2", 8 << 20), "3", member("~x3", 8 << 20), "4", "d4")
            let range = RevocationLogRange(client: cluster.client, key: "test:log")
            func names(_ read: RevocationLogRange.Read) -> [String] {
                stride(from: 0, to: read.items.count, by: 2).map { String((read.items[$0].string ?? "?").prefix(3)) }
            }
            let first = try await range.byScore(after: 0, through: 4, limit: 100)
            #expect(names(first) == ["a1", "b2", "~x1", "~x2"])
            #expect(first.skipped == 1 && first.skippedBytes == RevocationEvent.maxLineBytes + 1 && first.skippedAt == ["2 2"])
            #expect(first.truncated && first.examined == 5 && first.firstScore == 1 && first.lastScore == 3)
            // Stopped inside sequence 3: read it again from its start.
            #expect(RevocationLogReader.cursor(after: first, from: 0, limit: 100) == Double(3).nextDown)
            let second = try await range.byScore(after: Double(3).nextDown, through: 4, limit: 100)
            #expect(names(second) == ["~x1", "~x2"] && second.truncated)
            // Sequence 3 alone filled the read: go past it.
            #expect(RevocationLogReader.cursor(after: second, from: Double(3).nextDown, limit: 100) == 3)
            let third = try await range.byScore(after: 3, through: 4, limit: 100)
            #expect(names(third) == ["d4"] && !third.truncated && third.examined == 1)
            #expect(RevocationLogReader.cursor(after: third, from: 3, limit: 100) == nil)
            #expect(names(try await range.byScore(after: 0, through: 3, limit: 2)) == ["a1", "b2"])
            #expect(names(try await range.byRank(start: -1, count: 1)) == ["d4"])
            let ranked = try await range.byRank(start: 1, count: 3)
            #expect(names(ranked) == ["b2", "~x1"] && ranked.skipped == 1 && ranked.examined == 3 && !ranked.truncated)
            #expect(try await range.byRank(start: 7, count: 3).examined == 0)
            // A score no change has (a Redis writer's) that fills a read is passed, not read again for ever.
            _ = try await cluster.client.send("ZADD", key, "3.5", member("~y1", 8 << 20), "3.5", member("~y2", 8 << 20), "3.5", member("~y3", 8 << 20))
            let fractional = try await range.byScore(after: 3, through: 4, limit: 100)
            #expect(fractional.truncated && fractional.lastScore == 3.5)
            #expect(RevocationLogReader.cursor(after: fractional, from: 3, limit: 100) == 3.5)
            #expect(names(try await range.byScore(after: 3.5, through: 4, limit: 100)) == ["d4"])
            // Only members over the bound are removed, at the scores named.
            // (At the rank it was read at, and only while it is still there, that long.)
            #expect(try await range.removeOversized(at: ["3 2", "1 2", "2 2"]) == 1)
            #expect(try await range.removeOversized(at: ["2 2"]) == 0)
            #expect(try await cluster.client.send("ZCARD", key).int == 9)
            #expect(names(try await range.byScore(after: 0, through: 2, limit: 100)) == ["a1", "b2"])
        }
    }

    /// A bypass review: nodes read every log member at the head's sequence at every check, and
    /// a full sync read members by the page, whatever their size — a Redis writer's 8 MiB
    /// members (each under a change's bound, refused only after the transfer) and one far over
    /// it cost each node hundreds of megabytes a check.
    @Test("log members a Redis writer piles at the head's sequence — twenty of 8 MiB and one of 96 MiB, sorted after the signed entry — are measured inside Redis: a running gateway and one starting afterwards (a full sync) each grow their peak memory by less than 96 MiB, the full sync reports the member over a change's bound and leaves it unread, both still enforce revocations, and the control plane's reads remove a member over the bound")
    func largeLogMembersAreMeasuredInRedis() async throws {
        try await withCluster() { cluster in
            cluster.startBeating()
            let headEvent = try await cluster.revoke(.jti, "before-the-pile")
            let running = try await cluster.startGateway(id: "gw-pile-running")
            try await eventually("applied") { try cluster.statuses(try cluster.token(jti: "before-the-pile")) == [401] }
            func peak(_ gateway: GatewayProcess) -> Int { ProcessStatus.bytes(pid: gateway.process.pid, "VmHWM:") }
            let before = peak(running)
            #expect(before > 0, "no VmHWM for the gateway")
            guard let head = try await cluster.store.head() else {
                Issue.record("no head")
                return
            }
            // '~' sorts after the digits a signed entry starts with: the signed entry is still read first.
            let log = RedisArgument(cluster.keys.revocationLog)
            for i in 1...20 {
                let member = Array("~\(i)".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: (8 << 20) - 8)
                _ = try await cluster.client.send("ZADD", log, RedisArgument(head.sequence), RedisArgument(bytes: member))
            }
            let huge = Array("~~".utf8) + [UInt8](repeating: UInt8(ascii: "y"), count: 96 << 20)
            _ = try await cluster.client.send("ZADD", log, RedisArgument(head.sequence), RedisArgument(bytes: huge))
            try await Task.sleep(for: .seconds(2))  // ten checks at 200 ms
            let grew = peak(running) - before
            #expect(grew < 96 << 20, "the running gateway's peak grew by \(grew >> 20) MiB")
            let starting = try await cluster.startGateway(id: "gw-pile-starting")
            // A full sync reads every member by rank, the 96 MiB one too: measured, not sent.
            try await eventually("reported") { starting.process.output.contains("more than a signed change takes, left unread") }
            let startingPeak = peak(starting)
            #expect(startingPeak > 0 && startingPeak < before + (96 << 20), "the gateway that synced past the pile peaked at \(startingPeak >> 20) MiB (the running one started at \(before >> 20) MiB)")
            #expect(try cluster.statuses(try cluster.token(jti: "before-the-pile")) == [401, 401])
            _ = try await cluster.revoke(.jti, "after-the-pile")
            try await eventually(timeout: .seconds(10), "applied after the pile") {
                try cluster.statuses(try cluster.token(jti: "after-the-pile")) == [401, 401]
            }
            #expect(try cluster.statuses(try cluster.token()) == [200, 200])
            // One over a change's bound sorting before the signed entry, which every check would
            // copy inside Redis: the control plane's reader, finding it, removes it.
            let size = { try await cluster.client.send("ZCARD", log).int ?? 0 }
            let count = try await size()
            _ = try await cluster.client.send("ZADD", log, RedisArgument(head.sequence),
                                              RedisArgument(bytes: Array("!".utf8) + [UInt8](repeating: UInt8(ascii: "z"), count: 20 << 20)))
            #expect(try await cluster.store.get(id: headEvent.revocation.id)?.mac == headEvent.mac)
            // It goes; the 8 MiB ones stay, and so does the 96 MiB one this read did not reach.
            #expect(try await size() == count)
        }
    }
}

@Suite("key sets from a Redis writer without the cluster secret", .serialized)
struct KeySetTamperingTests {
    @Test("another issuer's valid record placed in this issuer's slot is refused and reported")
    func swappedIssuers() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([cluster.signer]))
            let gateway = try await cluster.startGateway(id: "gw-keys")
            let attackerKey = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "attacker")
            // A genuine, signed record — of another issuer whose keys the attacker controls.
            try await publisher.publish(issuer: "https://other-issuer.test", jwks: TestCluster.jwks([attackerKey]))
            let other = (try await cluster.client.send("HGETALL", RedisArgument(cluster.keys.keySet("https://other-issuer.test"))).array ?? [])
            _ = try await cluster.client.send(["HSET", RedisArgument(cluster.keys.keySet(TestCluster.issuer))] + other.compactMap(\.string).map { RedisArgument($0) })
            _ = try await cluster.client.send("PUBLISH", RedisArgument(cluster.keys.keySetChannel), RedisArgument("x \(TestCluster.issuer)"))
            try await eventually("reported") { gateway.process.output.contains("found in another issuer's slot") }
            #expect(try cluster.statuses(try cluster.token(signer: attackerKey)) == [401])
            #expect(try cluster.statuses(try cluster.token()) == [200])
            #expect(try gateway.metrics().contains("portcullis_cluster_tampering_total{key=\"keys:set:*\"}"))
        }
    }

    @Test("a key set rolled back to an older signed record is refused and reported")
    func rolledBack() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            let keyA = cluster.signer
            let keyB = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k2")
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([keyA]))
            let old = (try await cluster.client.send("HGETALL", RedisArgument(cluster.keys.keySet(TestCluster.issuer))).array ?? [])
            let gateway = try await cluster.startGateway(id: "gw-keys")
            // Key A is compromised: the control plane publishes B only.
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([keyB]))
            try await eventually("A retired") { try cluster.statuses(try cluster.token(signer: keyA)) == [401] }
            // The attack: the old signed record, with A, back in place.
            _ = try await cluster.client.send(["HSET", RedisArgument(cluster.keys.keySet(TestCluster.issuer))] + old.compactMap(\.string).map { RedisArgument($0) })
            _ = try await cluster.client.send("PUBLISH", RedisArgument(cluster.keys.keySetChannel), RedisArgument("x \(TestCluster.issuer)"))
            try await eventually("reported") { gateway.process.output.contains("rolled back to serial") }
            #expect(try cluster.statuses(try cluster.token(signer: keyA)) == [401])
            #expect(try cluster.statuses(try cluster.token(signer: keyB)) == [200])
        }
    }

    /// The build before read a key-set record whole on every announcement: a 400 MB `jwks` field
    /// took a gateway to 1.5 GB and its Redis connection past the command timeout (an attacker
    /// review, with the control plane's write rights).
    /// An attacker review: parsed before any MAC could be checked, one 20 MB message of three
    /// million junk lines held every gateway's revocation sync for minutes; a change whose JSON
    /// held a million empty objects, or a head padded with 10 MB of spaces, took each node to
    /// gigabytes.
    @Test("junk a Redis writer publishes or writes for nodes to parse — a message of 3 million lines on rev:events, a change whose JSON holds a million empty objects, a head padded to 10 MB — is refused before it is parsed: the gateway's peak memory grows by less than 64 MiB, a revocation made next reaches it within 5 s, and the head is replaced")
    func junkToParseIsRefusedUnparsed() async throws {
        try await withCluster() { cluster in
            cluster.startBeating()
            let gateway = try await cluster.startGateway(id: "gw-junk")
            func peak() -> Int { ProcessStatus.bytes(pid: gateway.process.pid, "VmHWM:") }
            let before = peak()
            #expect(before > 0, "no VmHWM for the gateway")
            let channel = RedisArgument(cluster.keys.revocationChannel)
            _ = try await cluster.client.send("EVAL", "redis.call('PUBLISH', KEYS[1], string.rep('1 0 {}\\n', 3000000)) return 0", "1", channel)
            _ = try await cluster.client.send("EVAL", "redis.call('PUBLISH', KEYS[1], '1 0 {\"a\":[' .. string.rep('{},', 1000000) .. '{}]}') return 0",
                                              "1", channel)
            try await Task.sleep(for: .milliseconds(500))
            let revokedAt = ContinuousClock.now
            _ = try await cluster.revoke(.jti, "after-the-junk")
            try await eventually(timeout: .seconds(10), "applied") { try cluster.statuses(try cluster.token(jti: "after-the-junk")) == [401] }
            let took = ContinuousClock.now - revokedAt
            #expect(took < .seconds(5), "the revocation after the junk took \(took)")
            // The head, padded: every check reads it. The heartbeat pauses, or it could replace
            // the head before the gateway's next check saw it.
            cluster.beater?.cancel()
            await cluster.beater?.value
            let head = RedisArgument(cluster.keys.revocationHead)
            _ = try await cluster.client.send("EVAL", "redis.call('SET', KEYS[1], 'head3' .. string.rep(' ', 10 * 1024 * 1024)) return 0", "1", head)
            try await eventually("reported") { gateway.process.output.contains("more than a signed head takes") }
            try await Task.sleep(for: .seconds(1))
            let grew = peak() - before
            #expect(grew < 64 << 20, "the gateway's peak grew by \(grew >> 20) MiB")
            // The writer replaces the head it cannot read (a new epoch) and goes on.
            _ = try await cluster.revoke(.jti, "after-the-head")
            try await eventually(timeout: .seconds(10), "applied in the new epoch") {
                try cluster.statuses(try cluster.token(jti: "after-the-head")) == [401]
            }
            #expect(try await cluster.client.send("STRLEN", head).int ?? 0 < 1024)
            cluster.startBeating()
            // A head that is not UTF-8 (read as missing, it stopped every write: a code review).
            _ = try await cluster.client.send("EVAL", "redis.call('SET', KEYS[1], '\\255\\254') return 0", "1", head)
            _ = try await cluster.revoke(.jti, "after-the-bytes")
            try await eventually(timeout: .seconds(10), "applied after the head that is not text") {
                try cluster.statuses(try cluster.token(jti: "after-the-bytes")) == [401]
            }
            #expect(gateway.process.isRunning)
        }
    }

    /// An attacker review: each announcement cost a gateway one Redis read on the task that
    /// also applies revocations, so a flood of them held live revocations back long after it
    /// (until the periodic check, here 30 s apart, found them).
    @Test("100 000 key-set announcements a Redis writer publishes for the gateway's issuer are coalesced: a revocation published right after them reaches the gateway over pub/sub within 5 s")
    func keySetAnnouncementFloodIsCoalesced() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            cluster.startBeating()
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([cluster.signer]))
            let gateway = try await cluster.startGateway(id: "gw-keys", checkInterval: "30s")
            try await eventually("the key set installed") { try cluster.statuses(try cluster.token()) == [200] }
            _ = try await cluster.client.send("EVAL", "for i = 1, 100000 do redis.call('PUBLISH', KEYS[1], 'v' .. i .. ' ' .. ARGV[1]) end return 0",
                                              "1", RedisArgument(cluster.keys.keySetChannel), RedisArgument(TestCluster.issuer))
            let revokedAt = ContinuousClock.now
            _ = try await cluster.revoke(.jti, "after-the-announcements")
            try await eventually(timeout: .seconds(30), "applied") { try cluster.statuses(try cluster.token(jti: "after-the-announcements")) == [401] }
            let took = ContinuousClock.now - revokedAt
            #expect(took < .seconds(5), "the revocation after the announcements took \(took)")
            #expect(try cluster.statuses(try cluster.token()) == [200])
            #expect(gateway.process.isRunning)
        }
    }

    @Test("a key-set record larger than one JWKS document and its fields (a 64 MiB jwks field), announced three times, is refused before it leaves Redis: reported, the gateway's peak memory grows by less than 32 MiB, and its keys stay")
    func oversizedKeySetRecordIsNotRead() async throws {
        try await withCluster(clusterKeys: true) { cluster in
            let publisher = KeySetPublisher(client: cluster.client, keys: cluster.keys, mac: cluster.mac)
            try await publisher.publish(issuer: TestCluster.issuer, jwks: TestCluster.jwks([cluster.signer]))
            let gateway = try await cluster.startGateway(id: "gw-keys")
            try await eventually("the key set installed") { try cluster.statuses(try cluster.token()) == [200] }
            func peak() -> Int { ProcessStatus.bytes(pid: gateway.process.pid, "VmHWM:") }
            let before = peak()
            #expect(before > 0, "no VmHWM for the gateway")
            let key = RedisArgument(cluster.keys.keySet(TestCluster.issuer))
            // Sent from here: Lua's string.rep of 64 MiB took Redis past the client's 2 s timeout on a busy machine.
            _ = try await cluster.client.send("HSET", key, "jwks", RedisArgument(bytes: [UInt8](repeating: UInt8(ascii: "x"), count: 64 << 20)))
            for _ in 0..<3 {
                _ = try await cluster.client.send("PUBLISH", RedisArgument(cluster.keys.keySetChannel), RedisArgument("x \(TestCluster.issuer)"))
                try await Task.sleep(for: .milliseconds(500))
            }
            try await eventually("reported") { gateway.process.output.contains("ignoring a key-set record") && gateway.process.output.contains("more than such a hash holds") }
            let grew = peak() - before
            #expect(grew < 32 << 20, "the gateway's peak grew by \(grew >> 20) MiB")
            #expect(try cluster.statuses(try cluster.token()) == [200])
        }
    }
}
