import ArgumentParser
import Foundation
import Logging
import NIOPosix
import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis
import PortcullisTestSupport

/// `portcullis-bench revocations`: memory and lookup cost of a large revocation list on one node,
/// and how long a node joining a cluster with that list takes to sync it from Redis.
struct RevocationBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revocations", abstract: "Revocation list memory, lookup cost and join-time sync.")

    @Option(help: "Revoked jtis.") var entries = 1_000_000
    @Option(help: "Lookups to time.") var lookups = 4_000_000

    func run() async throws {
        try ReleaseGateway.select()
        try inProcess()
        try await joinSync()
    }

    static func rssKiB(_ pid: Int32 = getpid()) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    static func token(jti: String, sid: String? = nil) -> VerifiedToken {
        VerifiedToken(issuerName: "bench", issuer: "https://bench", subject: "user", jwtID: jti, clientID: "app", audiences: ["a"],
                      scopes: [], expiresAt: Int64(Date().timeIntervalSince1970) + 3600, notBefore: nil, issuedAt: nil,
                      keyID: "k", algorithm: .ES256, claims: [:], sessionID: sid)
    }

    func inProcess() throws {
        print("== in-process: \(entries) revoked jtis ==")
        let now = Int64(Date().timeIntervalSince1970)
        let set = RevocationSet()
        let before = Self.rssKiB()
        var present: [VerifiedToken] = []
        let started = ContinuousClock.now
        for index in 0..<entries {
            let jti = "jti-\(index)-\(UInt64.random(in: 0...UInt64.max))"
            set.apply(Revocation(id: "r", operation: .add, kind: .jti, value: jti, issuer: nil, until: now + 3600,
                                 createdAtMillis: 0, actor: "bench", reason: nil), now: now)
            if index % 100 == 0 { present.append(Self.token(jti: jti)) }
        }
        let loaded = ContinuousClock.now - started
        let after = Self.rssKiB()
        print(String(format: "  extra RSS: %.1f MB for %d entries (%.1f bytes each); inserted in %@", Double(after - before) / 1024, entries,
                     Double(after - before) * 1024 / Double(entries), "\(loaded)"))
        let absent = (0..<present.count).map { Self.token(jti: "absent-\($0)-\(UInt64.random(in: 0...UInt64.max))") }
        let withoutJTI = (0..<present.count).map { _ in
            VerifiedToken(issuerName: "bench", issuer: "https://bench", subject: "user", jwtID: nil, clientID: "app", audiences: ["a"],
                          scopes: [], expiresAt: Int64(Date().timeIntervalSince1970) + 3600, notBefore: nil, issuedAt: nil,
                          keyID: "k", algorithm: .ES256, claims: [:])
        }
        // Two ways of timing, because taking a token out of an array copies it (ten reference-
        // counted fields, ~50 ns) while the request path passes the token it already holds:
        // - each token checked once: cold table slots, but the copy is in the figure;
        // - each token checked 8 times in a row: the copy is amortised, but 7 of 8 probes hit cache.
        // The per-request estimate takes the fixed cost from the second (token without jti) and
        // the jti lookup's cost from the first (with jti minus without jti, same copy in both).
        var results: [String: [Int: Double]] = [:]
        for repeats in [1, 8] {
            for (label, tokens, expectRevoked) in [("revoked", present, true), ("not revoked", absent, false), ("no jti", withoutJTI, false)] {
                var revoked = 0
                let clock = ContinuousClock()
                let start = clock.now
                var index = 0
                while index < lookups {
                    let token = tokens[(index / repeats) % tokens.count]
                    for _ in 0..<repeats {
                        if case .revoked = set.check(token) { revoked += 1 }
                    }
                    index += repeats
                }
                let perLookup = Self.nanos(clock.now - start) / Double(lookups)
                results[label, default: [:]][repeats] = perLookup
                print(String(format: "  check(), %@, each token %d× in a row: %.1f ns per call (%d calls, %d revoked)",
                             label, repeats, perLookup, lookups, revoked))
                precondition((revoked == lookups) == expectRevoked, "lookups gave wrong answers")
            }
        }
        let fixed = results["no jti"]![8]!
        for label in ["revoked", "not revoked"] {
            let lookup = results[label]![1]! - results["no jti"]![1]!
            print(String(format: "  per request, %@ jti: %.0f ns (fixed %.1f + jti lookup with a cold slot %.1f)", label, fixed + lookup, fixed, lookup))
        }
        try sessions(set, now: now, tokens: Array(absent.prefix(1000)))
    }

    /// What a `sid` adds to `check`, all beside the same revoked jtis: tokens with a jti that is
    /// not revoked, without a `sid`, with one while no session revocation is in force, with one
    /// not revoked while `entries / 100` are, and with a revoked one.
    func sessions(_ set: RevocationSet, now: Int64, tokens: [VerifiedToken]) throws {
        let count = max(1, entries / 100)
        print("== sessions: check() of a token with a jti (not revoked), beside \(entries) revoked jtis ==")
        var revoked: [VerifiedToken] = []
        let bare = tokens.map { Self.token(jti: $0.jwtID ?? "") }
        let withSid = tokens.enumerated().map { Self.token(jti: $1.jwtID ?? "", sid: "fam_live_\($0)") }
        func time(_ label: String, _ set: RevocationSet, _ tokens: [VerifiedToken], expectRevoked: Bool) {
            var hits = 0
            let clock = ContinuousClock()
            let start = clock.now
            for index in 0..<lookups {
                if case .revoked = set.check(tokens[index % tokens.count]) { hits += 1 }
            }
            print(String(format: "  %@: %.1f ns per call", label, Self.nanos(clock.now - start) / Double(lookups)))
            precondition((hits == lookups) == expectRevoked, "lookups gave wrong answers")
        }
        time("no sid", set, bare, expectRevoked: false)
        time("a sid, no session revoked", set, withSid, expectRevoked: false)
        for index in 0..<count {
            let sid = "fam_revoked_\(index)"
            set.apply(Revocation(id: "s\(index)", operation: .add, kind: .session, value: sid, issuer: "https://bench", until: now + 3600,
                                 createdAtMillis: 0, actor: "bench", reason: nil), now: now)
            if revoked.count < tokens.count { revoked.append(Self.token(jti: tokens[revoked.count].jwtID ?? "", sid: sid)) }
        }
        time("a sid, not revoked, \(count) sessions revoked", set, withSid, expectRevoked: false)
        time("a revoked sid", set, revoked, expectRevoked: true)
    }

    static func nanos(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
    }

    func joinSync() async throws {
        print("== a node joining a cluster with \(entries) revocations ==")
        let redis = try await RedisServerFixture.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = RedisClient(configuration: try RedisConfiguration(url: redis.url), eventLoopGroup: group, logger: Logger(label: "bench"))
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let keys = ClusterKeys(prefix: "portcullis:")

        func startGateway() async throws -> (GatewayProcess, Duration) {
            let started = ContinuousClock.now
            let gateway = try await GatewayProcess.start(readyTimeout: .seconds(60)) { port, admin, _ in
                """
                listen: 127.0.0.1:\(port)
                admin_listen: 127.0.0.1:\(admin)
                event_loops: 1
                cluster: {redis: \(redis.url), secret: \(Base64URL.encode(secret))}
                routes: [{name: a, path_prefix: /, upstream: {targets: [127.0.0.1:9]}}]
                """
            }
            return (gateway, ContinuousClock.now - started)
        }
        let (empty, _) = try await startGateway()
        try await Task.sleep(for: .seconds(1))
        let emptyRSS = Self.rssKiB(empty.process.pid)

        // Written the way a mass revocation is: signed changes of 1 000 tokens, 100 changes per
        // script call (the admin API's batch call writes the same shape).
        let store = RevocationStore(client: client, keys: keys, mac: ClusterMAC(secret: secret, cluster: keys.prefix),
                                    maxTokenLifetime: .seconds(3600))
        try await MassRevocationWriter.write(entries: entries, store: store)

        let (joined, readyAfter) = try await startGateway()
        try await Task.sleep(for: .seconds(1))
        let syncMillis = MassRevocationWriter.loggedSyncMillis(joined.process.output)
        let fullRSS = Self.rssKiB(joined.process.pid)
        print("  sync of \(entries) entries: \(syncMillis) ms (from the node's log); process start to ready: \(readyAfter)")
        print(String(format: "  gateway RSS: %.1f MB with the list vs %.1f MB without: +%.1f MB", Double(fullRSS) / 1024, Double(emptyRSS) / 1024,
                     Double(fullRSS - emptyRSS) / 1024))
        await empty.stop()
        await joined.stop()
        await client.close()
        await redis.stop()
        try? await group.shutdownGracefully()
    }
}
