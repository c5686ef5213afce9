import Foundation
import Logging
import NIOHTTP1
@testable import PortcullisJOSE
import Testing

/// KeySetLoader against a real HTTP server on loopback.
@Suite("remote and file key sets")
struct RemoteKeySetTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func policy(interval: Duration = .seconds(60), min: Duration = .milliseconds(200), max: Duration = .seconds(60),
                       maxStale: Duration = .seconds(3600), throttle: Duration = .milliseconds(500),
                       negative: Duration = .seconds(60)) -> JWKSRefreshPolicy {
        var policy = JWKSRefreshPolicy()
        policy.interval = interval
        policy.minInterval = min
        policy.maxInterval = max
        policy.maxStale = maxStale
        policy.unknownKeyIDThrottle = throttle
        policy.negativeCache = negative
        return policy
    }

    /// Polls `condition` until it holds or `timeout` passes.
    static func eventually(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    struct Harness {
        let server: JWKSServer
        let store: KeySetStore
        let loader: KeySetLoader
        let verifier: JWTVerifier
    }

    static func harness(_ server: JWKSServer, policy: JWKSRefreshPolicy, discovery: Bool = false) -> Harness {
        let issuer = Fixture.issuerConfig(algorithms: [.ES256], keySource: discovery ? .discovery(server.discoveryURL) : .jwksURI(server.jwksURL),
                                          refresh: policy)
        let store = KeySetStore()
        let loader = KeySetLoader(issuers: [issuer], store: store, httpClient: nil, logger: Self.quiet)
        let verifier = JWTVerifier(issuers: [issuer], keys: store, cache: VerifiedTokenCache(capacity: 100), now: { Fixture.now },
                                   onUnknownKeyID: { loader.requestRefetch(issuerName: $0, kid: $1) })
        return Harness(server: server, store: store, loader: loader, verifier: verifier)
    }

    static func signer(_ kid: String) throws -> JWTSigner { JWTSigner(key: try SigningKey.generate(.ES256), keyID: kid) }

    @Test("background refresh picks up a rotated key set")
    func rotation() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1"), k2 = try Self.signer("k2")
        server.update { $0.jwks = Fixture.jwks([k1]); $0.cacheControl = "max-age=0" }
        let h = Self.harness(server, policy: Self.policy(interval: .milliseconds(200), throttle: .seconds(60)))
        try await h.loader.loadInitial()
        #expect(h.store.isReady)
        let t1 = try k1.sign(claims: Fixture.claims()), t2 = try k2.sign(claims: Fixture.claims())
        #expect(h.verifier.verify(t1).value != nil)
        let task = Task { await h.loader.run() }
        server.update { $0.jwks = Fixture.jwks([k2]) }
        #expect(await Self.eventually { h.verifier.verify(t2).value != nil })
        // k1 left the set: its cached verification no longer counts.
        #expect(h.verifier.verify(t1).reason == .unknownKeyID)
        task.cancel()
        await task.value
        try await server.stop()
    }

    @Test("Cache-Control max-age sets the refresh interval, clamped to min_interval and max_interval")
    func maxAge() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1")
        server.update { $0.jwks = Fixture.jwks([k1]); $0.cacheControl = "max-age=0" }
        let h = Self.harness(server, policy: Self.policy(interval: .seconds(1), min: .milliseconds(200), max: .seconds(1), throttle: .seconds(60)))
        try await h.loader.loadInitial()
        let task = Task { await h.loader.run() }
        // max-age=0 → every 200 ms (min_interval): about 6 fetches in 1.2 s.
        let startA = server.requests
        try await Task.sleep(for: .milliseconds(1200))
        let fastFetches = server.requests - startA
        #expect(fastFetches >= 4, "\(fastFetches) fetches with max-age=0")
        #expect(fastFetches <= 8, "\(fastFetches) fetches with max-age=0")
        // max-age=3600 → every 1 s (max_interval): about 2 fetches in 2.2 s.
        server.update { $0.cacheControl = "public, max-age=3600" }
        try await Task.sleep(for: .milliseconds(250))  // let the pending 200 ms cycle pick up the new header
        let startB = server.requests
        try await Task.sleep(for: .milliseconds(2200))
        let slowFetches = server.requests - startB
        #expect((1...3).contains(slowFetches), "\(slowFetches) fetches with max-age=3600 clamped to 1 s")
        task.cancel()
        await task.value
        try await server.stop()
    }

    @Test("an unknown kid triggers exactly one refetch under concurrency, then throttle and negative cache apply")
    func unknownKeyID() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1"), k2 = try Self.signer("k2")
        server.update { $0.jwks = Fixture.jwks([k1]); $0.delay = .milliseconds(300) }
        let h = Self.harness(server, policy: Self.policy(throttle: .milliseconds(600), negative: .seconds(60)))
        try await h.loader.loadInitial()
        #expect(server.requests == 1)

        // 64 concurrent requests for the same unknown kid, from plain threads: one fetch.
        let started = ContinuousClock.now
        DispatchQueue.concurrentPerform(iterations: 64) { _ in h.loader.requestRefetch(issuerName: "main", kid: "nope") }
        #expect(ContinuousClock.now - started < .milliseconds(250), "requestRefetch must not block")
        #expect(await Self.eventually { server.requests == 2 })
        try await Task.sleep(for: .milliseconds(500))
        #expect(server.requests == 2)
        // Still unknown after the fetch: negatively cached even once the throttle has passed.
        try await Task.sleep(for: .milliseconds(300))
        h.loader.requestRefetch(issuerName: "main", kid: "nope")
        try await Task.sleep(for: .milliseconds(400))
        #expect(server.requests == 2)

        // A token with a new kid: rejected at first, triggers one fetch, then verifies.
        server.update { $0.jwks = Fixture.jwks([k1, k2]); $0.delay = .zero }
        let t2 = try k2.sign(claims: Fixture.claims())
        #expect(h.verifier.verify(t2).reason == .unknownKeyID)
        #expect(await Self.eventually { h.verifier.verify(t2).value != nil })
        #expect(server.requests == 3)
        // Within the throttle window another unknown kid does not fetch.
        h.loader.requestRefetch(issuerName: "main", kid: "k3")
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.requests == 3)
        try await server.stop()
    }

    @Test("while the issuer is down the last good set serves until max_stale, then tokens fail with keys_not_loaded")
    func issuerDown() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1")
        server.update { $0.jwks = Fixture.jwks([k1]) }
        let h = Self.harness(server, policy: Self.policy(interval: .milliseconds(200), maxStale: .milliseconds(1500), throttle: .seconds(60)))
        try await h.loader.loadInitial()
        let token = try k1.sign(claims: Fixture.claims())
        let task = Task { await h.loader.run() }
        server.update { $0.status = .serviceUnavailable }
        let down = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(700))
        #expect(server.requests >= 3, "retries every min_interval")
        #expect(h.verifier.verify(token).value != nil, "last good set still serves")
        #expect(await Self.eventually { h.verifier.verify(token).reason == .keysNotLoaded })
        #expect(ContinuousClock.now - down >= .milliseconds(1300))
        #expect(!h.store.isReady)
        // A bad document (no usable key) never replaces a set; a good one brings it back.
        server.update { $0.status = .ok; $0.jwks = Array(#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#.utf8) }
        try await Task.sleep(for: .milliseconds(500))
        #expect(h.verifier.verify(token).reason == .keysNotLoaded)
        server.update { $0.jwks = Fixture.jwks([k1]) }
        #expect(await Self.eventually { h.verifier.verify(token).value != nil })
        task.cancel()
        await task.value
        try await server.stop()
    }

    /// AsyncHTTPClient's timeout ends with the response head: the build before waited for a body
    /// as long as the server took (a gateway's start 47 s, a reload 44 s, in an attacker review).
    @Test("a key-set server that sends its head at once and holds back its body fails the fetch at the deadline, head and body together; a later fetch loads the set")
    func bodyWithinDeadline() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1")
        server.update { $0.jwks = Fixture.jwks([k1]); $0.bodyDelay = .seconds(4) }
        let issuer = Fixture.issuerConfig(algorithms: [.ES256], keySource: .jwksURI(server.jwksURL), refresh: Self.policy(throttle: .milliseconds(1)))
        let store = KeySetStore()
        let loader = KeySetLoader(issuers: [issuer], store: store, fetchDeadline: .milliseconds(600), logger: Self.quiet)
        let started = ContinuousClock.now
        try await loader.loadInitial()
        #expect(ContinuousClock.now - started < .seconds(2), "the fetch waited \(ContinuousClock.now - started) for the body")
        #expect(store.keySet(issuerName: issuer.name) == nil)
        server.update { $0.bodyDelay = .zero }
        loader.requestRefetch(issuerName: issuer.name, kid: "k1")
        #expect(await Self.eventually { store.keySet(issuerName: issuer.name)?.keysByID["k1"] != nil })
        try await server.stop()
    }

    /// A reload replaces the loader; one of the configuration before had a fetch in flight (an
    /// unknown kid's). On the build before its answer, landing after the reload, put the old
    /// source's keys back over the new configuration's (an attacker review).
    @Test("a fetch started by a loader whose configuration a reload replaced installs nothing once the new configuration's epoch began")
    func replacedLoaderWritesNothing() async throws {
        let server = try await JWKSServer()
        let old = try Self.signer("old"), new = try Self.signer("new")
        server.update { $0.jwks = Fixture.jwks([old]) }
        let h = Self.harness(server, policy: Self.policy(throttle: .milliseconds(1)))
        try await h.loader.loadInitial()
        server.update { $0.delay = .milliseconds(800) }
        h.loader.requestRefetch(issuerName: "main", kid: "unknown")
        try await Task.sleep(for: .milliseconds(100))
        // The reload: a new epoch, then the new configuration's set (its key file).
        _ = h.store.beginEpoch()
        h.store.replace(issuerName: "main", keySet: try JWKSet.parse(Fixture.jwks([new]), issuer: Fixture.issuerConfig(algorithms: [.ES256]), logger: nil),
                        version: "reloaded")
        try await Task.sleep(for: .milliseconds(1200))
        #expect(server.requests >= 2, "the old loader's fetch was answered")
        #expect(h.store.version(issuerName: "main") == "reloaded")
        #expect(h.store.keySet(issuerName: "main")?.keysByID["old"] == nil, "the replaced source's key is back")
        try await server.stop()
    }

    /// The loader a reload makes has fetched nothing yet: on the build before it never counted
    /// the set it found as stale, so an issuer unreachable across a reload kept its keys for good.
    @Test("after a reload, an issuer that stays unreachable loses its set max_stale after the replaced loader last fetched it")
    func maxStaleAcrossReload() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1")
        server.update { $0.jwks = Fixture.jwks([k1]) }
        let policy = Self.policy(interval: .milliseconds(200), maxStale: .milliseconds(1500), throttle: .seconds(60))
        let h = Self.harness(server, policy: policy)
        try await h.loader.loadInitial()
        server.update { $0.status = .serviceUnavailable }
        // The reload: a new loader for the same issuer, over the same store.
        _ = h.store.beginEpoch()
        let issuer = Fixture.issuerConfig(algorithms: [.ES256], keySource: .jwksURI(server.jwksURL), refresh: policy)
        let reloaded = KeySetLoader(issuers: [issuer], store: h.store, logger: Self.quiet)
        reloaded.carryOver(from: h.loader)
        let task = Task { await reloaded.run() }
        let token = try k1.sign(claims: Fixture.claims())
        #expect(h.verifier.verify(token).value != nil, "the set serves until max_stale")
        #expect(await Self.eventually(.seconds(4)) { h.store.keySet(issuerName: "main") == nil }, "the set was kept past max_stale")
        task.cancel()
        await task.value
        try await server.stop()
    }

    @Test("discovery: jwks_uri is followed only when the document names the configured issuer")
    func discovery() async throws {
        let server = try await JWKSServer()
        let k1 = try Self.signer("k1")
        server.update { $0.jwks = Fixture.jwks([k1]) }
        let h = Self.harness(server, policy: Self.policy(), discovery: true)
        try await h.loader.loadInitial()
        #expect(h.verifier.verify(try k1.sign(claims: Fixture.claims())).value != nil)

        server.update { $0.discoveryIssuer = "https://evil.example" }
        let other = Self.harness(server, policy: Self.policy(), discovery: true)
        try await other.loader.loadInitial()
        #expect(other.store.keySet(issuerName: "main") == nil)
        try await server.stop()
    }

    /// The issuer's URL answers with a redirect to another server that serves a valid key set
    /// (standing for an `http://` or foreign host an attacker on the path points the fetch at).
    /// AsyncHTTPClient's default client followed it, https to http included.
    @Test("a redirect from the JWKS URL is not followed; the failure names it")
    func redirectNotFollowed() async throws {
        let server = try await JWKSServer()
        let elsewhere = try await JWKSServer()
        let k1 = try Self.signer("k1")
        elsewhere.update { $0.jwks = Fixture.jwks([k1]) }
        server.update { $0.redirect = elsewhere.jwksURL }
        let h = Self.harness(server, policy: Self.policy())
        try await h.loader.loadInitial()
        #expect(h.store.keySet(issuerName: "main") == nil)
        #expect(elsewhere.requests == 0, "the redirect was followed")

        let downloader = JWKSDownloader(httpClient: JWKSDownloader.sharedHTTPClient, logger: nil)
        let issuer = Fixture.issuerConfig(algorithms: [.ES256], keySource: .jwksURI(server.jwksURL), refresh: Self.policy())
        do {
            _ = try await downloader.download(issuer)
            Issue.record("the download succeeded")
        } catch {
            #expect(error.outcome == "http_error")
            #expect(error.message.contains("redirects are not followed"))
        }
        try await server.stop()
        try await elsewhere.stop()
    }

    @Test("jwks_file: loaded at start, replaced on reload, kept when the new file is bad")
    func file() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jose-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("jwks.json").path
        let k1 = try Self.signer("k1"), k2 = try Self.signer("k2")
        try Data(Fixture.jwks([k1])).write(to: URL(fileURLWithPath: path))
        let issuer = Fixture.issuerConfig(algorithms: [.ES256], keySource: .jwksFile(path))
        let store = KeySetStore()
        let loader = KeySetLoader(issuers: [issuer], store: store, logger: Self.quiet)
        #expect(!store.isReady)
        try await loader.loadInitial()
        #expect(store.isReady)
        let verifier = JWTVerifier(issuers: [issuer], keys: store, cache: nil, now: { Fixture.now })
        #expect(verifier.verify(try k1.sign(claims: Fixture.claims())).value != nil)
        try Data(Fixture.jwks([k2])).write(to: URL(fileURLWithPath: path))
        try await loader.reload()
        #expect(verifier.verify(try k2.sign(claims: Fixture.claims())).value != nil)
        #expect(verifier.verify(try k1.sign(claims: Fixture.claims())).reason == .unknownKeyID)
        try Data("{".utf8).write(to: URL(fileURLWithPath: path))
        await #expect(throws: JWKError.self) { try await loader.reload() }
        #expect(verifier.verify(try k2.sign(claims: Fixture.claims())).value != nil)
    }
}
