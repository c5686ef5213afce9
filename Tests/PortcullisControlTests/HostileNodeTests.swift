import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// The membership records against a party with a gateway's Redis rights: with the cluster secret
/// (any gateway host holds it), or without it. Real Redis, a real control plane and gateway.
@Suite("membership records against another node", .serialized)
struct HostileNodeTests {
    /// The build before computed `interval × 3` and `now − heartbeat` from the signed numbers of
    /// every record it read: a record stating an interval of `Int64.max` stopped the control plane
    /// and every gateway with an arithmetic overflow, and again at each restart (found by an
    /// attacker review).
    @Test("a node record signed with the cluster secret but stating a heartbeat interval or time past any plausible value stops no node: it is refused as malformed and reported, and the control plane and gateway go on")
    func absurdSignedRecordStopsNoNode() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-1")
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(configuration: try RedisConfiguration(url: cluster.redis.url), eventLoopGroup: group,
                                     logger: Logger(label: "hostile-node"))
            let membership = Membership(client: client, keys: ClusterKeys(prefix: "portcullis:"),
                                        mac: ClusterMAC(secret: ControlCluster.secret, cluster: "portcullis:"),
                                        alarm: TamperingAlarm(prefix: "portcullis:", logger: Logger(label: "hostile-node")))
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for (id, heartbeat, interval) in [("gw-evil-interval", now, Int64.max), ("gw-evil-time", Int64.min, Int64(300))] {
                let record = NodeRecord(id: id, instance: "evil", role: "gateway", address: "127.0.0.1:1", adminAddress: "127.0.0.1:2",
                                        version: "evil", startedAtMillis: Int64.min, heartbeatAtMillis: heartbeat, heartbeatIntervalMillis: interval,
                                        ack: nil, keySetVersions: [:], rateLimitMode: "cluster", redisConnected: true, revocationStalenessSeconds: 0)
                try await membership.heartbeat(record, interval: .seconds(60))
            }
            // Several heartbeats and observations of every node read the records.
            try await Task.sleep(for: .seconds(2))
            #expect(cluster.control.process.isRunning, "the control plane stopped: \(cluster.control.process.output.suffix(500))")
            #expect(gateway.process.isRunning, "the gateway stopped: \(gateway.process.output.suffix(500))")
            let nodes = try cluster.control.admin("GET", "/v1/nodes")
            #expect(nodes.status == 200)
            let ids = (nodes.json["nodes"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
            #expect(ids == ["gw-1"], "\(nodes.text)")
            #expect(try gateway.request("GET", "/status/200").status != 0)
            #expect(gateway.process.output.contains("Redis tampering") && gateway.process.output.contains("malformed node record"),
                    "\(gateway.process.output.suffix(800))")
            try await client.close()
            try await group.shutdownGracefully()
        }
    }

    /// The build before started a task for every refetch request on `keys:refetch`, which any
    /// gateway's credential may publish: 200 000 took the control plane to 1.3 GB and stalled its
    /// head beat and revocation writes (an attacker review).
    @Test("200 000 refetch requests a gateway's credential publishes are handled from a queue of 64: the control plane grows by less than 64 MB, its head beat goes on and its admin API answers")
    func refetchFloodIsQueued() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            func resident() -> Int { ProcessStatus.bytes(pid: cluster.control.process.pid, "VmRSS:") }
            let before = resident()
            #expect(before > 0, "no VmRSS for the control plane")
            // Ten batches of 20 000 distinct kids of the built-in issuer ("kid issuer"), paced
            // below Redis's output-buffer limit for subscribers.
            for batch in 0..<10 {
                _ = try cluster.redis.cli("EVAL", "for i = 1, 20000 do redis.call('PUBLISH', KEYS[1], 'flood-' .. ARGV[1] .. '-' .. i .. ' ' .. ARGV[2]) end return 0",
                                          "1", "portcullis:keys:refetch", String(batch), cluster.issuer)
                try await Task.sleep(for: .milliseconds(200))
            }
            let beat = try cluster.redis.cli("GET", "portcullis:rev:head")
            try await eventually(timeout: .seconds(5), "the head beat goes on") { try cluster.redis.cli("GET", "portcullis:rev:head") != beat }
            #expect(try cluster.control.admin("GET", "/v1/status").status == 200)
            let grew = resident() - before
            #expect(grew < 64 << 20, "the control plane grew by \(grew >> 20) MiB")
            #expect(cluster.control.process.isRunning)
        }
    }

    /// The build before read node records and revocation acknowledgements whole: a 200 MB field
    /// in a junk node record (within a gateway's own Redis rights) swung every node by 600 MB at
    /// every heartbeat, and one in the next sequence's acknowledgements held `?wait` and the
    /// propagation views for seconds (a bypass review).
    @Test("a 64 MiB field in a junk node record, or in the acknowledgements of the next revocation, is refused before it leaves Redis: the junk id is pruned, the peaks of the gateway and the control plane grow by less than 32 MiB, and a revocation with ?wait is acknowledged")
    func oversizedRecordsAreNotRead() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-1")
            func peak(_ pid: Int32) -> Int { ProcessStatus.bytes(pid: pid, "VmHWM:") }
            let before = (gateway: peak(gateway.process.pid), control: peak(cluster.control.process.pid))
            #expect(before.gateway > 0 && before.control > 0, "no VmHWM")
            let sequence = Int(try cluster.redis.cli("GET", "portcullis:rev:head").split(separator: " ").dropFirst(2).first ?? "") ?? 0
            _ = try cluster.redis.cli("EVAL", """
                redis.call('HSET', KEYS[1], 'role', 'gateway', 'pad', string.rep('x', 64 * 1024 * 1024))
                redis.call('SADD', KEYS[2], 'zz-junk')
                redis.call('HSET', KEYS[3], 'zz-junk', string.rep('y', 64 * 1024 * 1024))
                return 0
                """, "3", "portcullis:node:zz-junk", "portcullis:nodes", "portcullis:rev:acks:\(sequence + 1)")
            try await eventually(timeout: .seconds(10), "the junk id pruned") {
                try cluster.redis.cli("SISMEMBER", "portcullis:nodes", "zz-junk").trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            }
            // Its acknowledgements hash is refused unread; the gateway's node record, which carries
            // its latest acknowledgement too, still confirms it.
            let revoked = try cluster.control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"subject","value":"after-the-junk"}"#)
            #expect(revoked.status == 201, "\(revoked.status) \(revoked.text)")
            #expect(cluster.control.process.output.contains("ignoring the acknowledgements"), "\(cluster.control.process.output.suffix(800))")
            let grew = (gateway: peak(gateway.process.pid) - before.gateway, control: peak(cluster.control.process.pid) - before.control)
            #expect(grew.gateway < 32 << 20 && grew.control < 32 << 20, "peaks grew by \(grew.gateway >> 20) and \(grew.control >> 20) MiB")
            // Whichever node scans first refuses the record and prunes its id; the other may never
            // see it (the gateway's connection may be reconnecting after the writer's 128 MiB script
            // held Redis past its periodic check).
            #expect(gateway.process.output.contains("ignoring a node record") || cluster.control.process.output.contains("ignoring a node record"),
                    "\(gateway.process.output.suffix(800))")
        }
    }

    /// Split on spaces before any check, an acknowledgement of 24 MB of spaces took the control
    /// plane past a gigabyte, and a flood of small ones grew its unbounded subscription buffer by
    /// 100 MB a second (an attacker review); any gateway's credential may publish them.
    @Test("acknowledgements a gateway's credential publishes padded to 8 MB, and a flood of 100 000 small junk ones, are refused before they are parsed: the control plane's peak grows by less than 64 MiB and a revocation with ?wait is still acknowledged")
    func junkAcknowledgementsAreRefusedUnparsed() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            _ = try await cluster.startGateway(id: "gw-1")
            func peak() -> Int { ProcessStatus.bytes(pid: cluster.control.process.pid, "VmHWM:") }
            let before = peak()
            #expect(before > 0, "no VmHWM")
            _ = try cluster.redis.cli("EVAL", """
                for i = 1, 3 do redis.call('PUBLISH', KEYS[1], 'ack3 ' .. string.rep(' ', 8 * 1024 * 1024)) end
                for i = 1, 100000 do redis.call('PUBLISH', KEYS[1], 'ack3 x ' .. i) end
                return 0
                """, "1", "portcullis:rev:acks")
            let revoked = try cluster.control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"subject","value":"after-the-acks"}"#)
            #expect(revoked.status == 201, "\(revoked.status) \(revoked.text)")
            try await Task.sleep(for: .seconds(1))
            let grew = peak() - before
            #expect(grew < 64 << 20, "the control plane's peak grew by \(grew >> 20) MiB")
            #expect(cluster.control.process.isRunning)
        }
    }

    /// The build before wrote the record with a plain `HSET`, which fails with WRONGTYPE on a key
    /// of another type, and wrote the control plane's record and its head beat in one step: a set
    /// put where the records belong hid the gateway from the cluster and stopped the beats every
    /// gateway's freshness rests on, for as long as the key stayed (an attacker review).
    @Test("a Redis writer that puts sets where the control plane's and a gateway's node records belong hides neither and stops no head beat: both records are written again within a few heartbeats, and it is reported")
    func wrongTypeRecordKeysAreReplaced() async throws {
        // Under the shipped ACL file, each node on its role's user: the replacement must be
        // within a gateway's rights.
        let directory = try TemporaryDirectory.make(prefix: "portcullis-hostile-node")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await ACLFile.cluster(in: directory)
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-1")
            try await eventually("gw-1 live") {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [Any])?.count == 1
            }
            let root = RedisCLI.root(cluster.redis.port)
            for key in ["portcullis:node:control-1", "portcullis:node:gw-1"] {
                _ = try root.run(["DEL", key])
                _ = try root.run(["SADD", key, "poison"])
            }
            let beatBefore = try root.run(["GET", "portcullis:rev:head"])
            try await eventually("both records are hashes again") {
                try ["portcullis:node:control-1", "portcullis:node:gw-1"].allSatisfy { try root.run(["TYPE", $0]) == "hash" }
            }
            try await Task.sleep(for: .milliseconds(700))
            #expect(try root.run(["GET", "portcullis:rev:head"]) != beatBefore, "the head beat stopped")
            #expect(aclLogCount(try root.run(["ACL", "LOG", "100"]), user: "portcullis-gateway") == 0, "a command the gateway's user may not run")
            let nodes = try cluster.control.admin("GET", "/v1/nodes")
            let ids = (nodes.json["nodes"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
            #expect(ids == ["gw-1"], "\(nodes.text)")
            #expect(PrometheusText.sample(try gateway.metrics(), #"portcullis_cluster_tampering_total{key="node:*"}"#) ?? 0 >= 1)
        }
    }

    /// The build before wrote a heartbeat field by field: junk fields another gateway's
    /// credential added to a live gateway's record stayed for as long as it lived, every reader
    /// refused the record as too large, and the gateway was missing from the node list, from
    /// `?wait` (201 "complete" with it paused) and from rotations (an attacker review).
    @Test("junk fields a gateway's credential adds to a live gateway's record are gone at its next heartbeat: the gateway stays listed, and a revocation with it paused answers 202 naming it")
    func junkFieldsInALiveRecordAreReplaced() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-hostile-node")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await ACLFile.cluster(in: directory)
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-1")
            func listed() throws -> [String] {
                (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
            }
            try await eventually("gw-1 live") { try listed() == ["gw-1"] }
            let attacker = RedisCLI.gateway(cluster.redis.port)
            _ = try attacker.run(["HSET", "portcullis:node:gw-1"] + (1...40).flatMap { ["junk\($0)", "x"] })
            try await eventually("the junk gone") { Int(try RedisCLI.root(cluster.redis.port).run(["HLEN", "portcullis:node:gw-1"])) ?? 99 < 20 }
            // Past the control plane's three-heartbeat grace for a record it cannot read.
            try await Task.sleep(for: .seconds(4))
            #expect(try listed() == ["gw-1"])
            gateway.process.signal(SIGSTOP)
            defer { gateway.process.signal(SIGCONT) }
            let revoked = try cluster.control.admin("POST", "/v1/revocations?wait=500ms", json: #"{"kind":"subject","value":"mallory"}"#)
            gateway.process.signal(SIGCONT)
            let laggards = ((revoked.json["propagation"] as? [String: Any])?["laggards"] as? [Any])?.compactMap { ($0 as? [String: Any])?["id"] as? String ?? $0 as? String }
            #expect(revoked.status == 202 && laggards == ["gw-1"], "\(revoked.status) \(revoked.text)")
        }
    }

    /// The build before bounded the node set's ids in number only: five 16 MiB ids a gateway's
    /// credential added swung every node by hundreds of MB at every heartbeat and timed their
    /// Redis connections out (an attacker review).
    @Test("ids longer than any node id in the node set are removed in Redis unread: with five 16 MiB ids added, the peaks of the gateway and the control plane grow by less than 32 MiB, and it is reported")
    func longNodeIDsAreRemovedUnread() async throws {
        let cluster = try await ControlCluster()
        try await withCleanup(cluster, { await $0.shutdown() }) { cluster in
            let gateway = try await cluster.startGateway(id: "gw-1")
            func peak(_ pid: Int32) -> Int { ProcessStatus.bytes(pid: pid, "VmHWM:") }
            let before = (gateway: peak(gateway.process.pid), control: peak(cluster.control.process.pid))
            _ = try cluster.redis.cli("EVAL", """
                for i = 1, 5 do redis.call('SADD', KEYS[1], string.rep(tostring(i), 16 * 1024 * 1024)) end
                return 0
                """, "1", "portcullis:nodes")
            try await eventually(timeout: .seconds(10), "the long ids removed") {
                try cluster.redis.cli("SCARD", "portcullis:nodes").trimmingCharacters(in: .whitespacesAndNewlines) == "2"
            }
            try await Task.sleep(for: .seconds(2))
            let grew = (gateway: peak(gateway.process.pid) - before.gateway, control: peak(cluster.control.process.pid) - before.control)
            #expect(grew.gateway < 32 << 20 && grew.control < 32 << 20, "peaks grew by \(grew.gateway >> 20) and \(grew.control >> 20) MiB")
            let reported = (PrometheusText.sample(try gateway.metrics(), #"portcullis_cluster_tampering_total{key="nodes"}"#) ?? 0)
                + (PrometheusText.sample(try cluster.control.metrics(), #"portcullis_cluster_tampering_total{key="nodes"}"#) ?? 0)
            #expect(reported >= 1, "not reported")
            let ids = (try cluster.control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(ids == ["gw-1"])
        }
    }
}
