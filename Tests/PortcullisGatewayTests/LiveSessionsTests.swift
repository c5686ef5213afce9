@testable import PortcullisGateway
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import PortcullisCluster
import PortcullisJOSE
import Prometheus
import Testing

/// The session registry against a real `RevocationSet`, changed the way the sync task changes
/// it, on an `EmbeddedEventLoop` whose clock the tests move.
@Suite("live sessions: closing long-lived connections when their token ends")
struct LiveSessionsTests {
    static let now: Int64 = 1_800_000_000

    final class Ends {
        var seen: [LiveSessions.TokenEnd] = []
    }

    static func token(sub: String = "alice", jti: String? = "jti-1", client: String = "app", kid: String = "k1", exp: Int64 = now + 3600,
                      leeway: Int = 5) -> VerifiedToken {
        VerifiedToken(issuerName: "idp", issuer: "https://idp", subject: sub, jwtID: jti, clientID: client, audiences: ["api"],
                      scopes: [], expiresAt: exp, notBefore: nil, issuedAt: now - 10, keyID: kid, algorithm: .ES256, claims: [:],
                      leewaySeconds: leeway)
    }

    static func revocation(_ kind: Revocation.Kind, _ value: String) -> Revocation {
        Revocation(id: UUID().uuidString, operation: .add, kind: kind, value: value, issuer: nil, until: now + 600,
                   createdAtMillis: now * 1000, actor: "test", reason: nil)
    }

    /// A registry wired to `set` as the gateway wires it, with the wall clock at `now` when
    /// `loop`'s time begins, moving with it.
    static func registry(_ set: RevocationSet, loop: EmbeddedEventLoop, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) -> LiveSessions {
        let sessions = LiveSessions(revocation: set, registry: registry, wallClock: wallClock(loop))
        set.onChange { sessions.revocationChanged() }
        return sessions
    }

    @Test("revoking a session's token by jti, subject cut-off, client cut-off or key ends it as revoked; other sessions stay")
    func revocationKinds() throws {
        for (kind, value) in [(Revocation.Kind.jti, "jti-1"), (.subject, "alice"), (.client, "app"), (.key, "k1")] {
            let loop = EmbeddedEventLoop()
            let set = RevocationSet()
            let sessions = Self.registry(set, loop: loop)
            let ends = Ends()
            let bystanderEnds = Ends()
            let session = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, eventLoop: loop) { ends.seen.append($0) }
            let bystander = sessions.open(protocol: .websocket, token: Self.token(sub: "bob", jti: "jti-2", client: "other", kid: "k2"),
                                          policy: .close, eventLoop: loop) { bystanderEnds.seen.append($0) }
            loop.run()
            #expect(ends.seen.isEmpty)
            set.apply(Self.revocation(kind, value), now: Self.now)
            loop.run()
            #expect(ends.seen == [.revoked], "\(kind)")
            #expect(session.endReason == .tokenRevoked)
            #expect(bystanderEnds.seen.isEmpty && bystander.endReason == nil, "\(kind)")
            #expect(sessions.watchedCount(on: loop).sessions == 1)
            bystander.end(.client)
            #expect(sessions.watchedCount(on: loop).sessions == 0)
        }
    }

    /// The build before watched sessions for their tokens only: a WebSocket admitted on a route
    /// requiring a client certificate stayed open after a reload had replaced the CA that
    /// verified it.
    @Test("a session admitted on its connection's client certificate ends when a reload replaces the trust that verified it, whatever its route's on_token_end, and one opened on a connection already behind ends at once; a session on a connection opened under the new trust, or admitted without the certificate, stays")
    func clientTrustReplaced() throws {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry(), wallClock: { Self.now * 1_000_000_000 })
        let listener = ListenerSetup(.init(tls: try ListenerSetupTests.tls([1]), trustedProxies: nil))
        let old = HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: true, trust: (listener, listener.open(EmbeddedChannel()).generation))
        let bound = Ends(), allowed = Ends(), uncertified = Ends(), late = Ends(), renewed = Ends()
        let session = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, certificate: old, eventLoop: loop) { bound.seen.append($0) }
        // `on_token_end: allow` and no token: watched for the certificate alone.
        let allowSession = sessions.open(protocol: .h2, token: nil, policy: .allow, certificate: old, eventLoop: loop) { allowed.seen.append($0) }
        let bystander = sessions.open(protocol: .websocket, token: Self.token(jti: "jti-2"), policy: .close, eventLoop: loop) { uncertified.seen.append($0) }
        loop.run()
        #expect(sessions.watchedCount(on: loop).sessions == 3)

        _ = listener.replace(.init(tls: try ListenerSetupTests.tls([2]), trustedProxies: nil))
        // Opened between the change and the sweep: ends at once.
        let lateSession = sessions.open(protocol: .http1, token: nil, policy: .close, certificate: old, eventLoop: loop) { late.seen.append($0) }
        let current = HeaderRewriter.ClientInfo(address: "192.0.2.2", isTLS: true, trust: (listener, listener.open(EmbeddedChannel()).generation))
        let renewedSession = sessions.open(protocol: .websocket, token: nil, policy: .close, certificate: current, eventLoop: loop) { renewed.seen.append($0) }
        sessions.clientTrustReplaced()
        loop.run()
        #expect(bound.seen == [.clientTrustReplaced] && session.endReason == .clientTrustReplaced)
        #expect(allowed.seen == [.clientTrustReplaced] && allowSession.endReason == .clientTrustReplaced)
        #expect(late.seen == [.clientTrustReplaced] && lateSession.endReason == .clientTrustReplaced)
        #expect(uncertified.seen.isEmpty && bystander.endReason == nil)
        #expect(renewed.seen.isEmpty && renewedSession.endReason == nil)
        #expect(LiveSessions.TokenEnd.clientTrustReplaced.response(realm: "portcullis").status == .forbidden)
    }

    /// A standalone gateway has no key revocation: on the build before, a reload removing a leaked
    /// key left the streams its tokens had opened running until their `exp` (an attacker review).
    @Test("a key set that no longer holds a session's signing key (by kid and fingerprint: a key replaced under the same kid counts as gone) ends the session as revoked; a set not loaded ends none")
    func keyRemovedFromSet() throws {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry(), wallClock: { Self.now * 1_000_000_000 })
        let store = KeySetStore()
        store.onChange { sessions.keysChanged(in: $0) }
        let k1 = try SigningKey.generate(.ES256), k2 = try SigningKey.generate(.ES256)
        let issuer = IssuerConfig(name: "idp", issuer: "https://idp", audiences: ["api"], algorithms: [.ES256], keySource: .none)
        func set(_ keys: [(SigningKey, String)]) throws -> JWKSet {
            try JWKSet.parse(Array(JSONWriter.serialize(["keys": .array(keys.map { $0.0.publicJWK(keyID: $0.1) })]).utf8), issuer: issuer, logger: nil)
        }
        store.replace(issuerName: "idp", keySet: try set([(k1, "k1"), (k2, "k2")]), version: "1")
        let ends = Ends(), bystanderEnds = Ends(), noKidEnds = Ends()
        let session = sessions.open(protocol: .websocket, token: Self.token(kid: "k1"), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        let bystander = sessions.open(protocol: .websocket, token: Self.token(jti: "jti-2", kid: "k2"), policy: .close, eventLoop: loop) { bystanderEnds.seen.append($0) }
        let noKid = VerifiedToken(issuerName: "idp", issuer: "https://idp", subject: "carol", jwtID: "jti-3", clientID: "app", audiences: ["api"],
                                  scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: nil, algorithm: .ES256,
                                  claims: [:], leewaySeconds: 5)
        _ = sessions.open(protocol: .websocket, token: noKid, policy: .close, eventLoop: loop) { noKidEnds.seen.append($0) }
        loop.run()
        // A refresh with the same keys ends nothing; one without k1 ends its session alone.
        store.replace(issuerName: "idp", keySet: try set([(k1, "k1"), (k2, "k2")]), version: "2")
        loop.run()
        #expect(ends.seen.isEmpty)
        store.replace(issuerName: "idp", keySet: try set([(k2, "k2")]), version: "3")
        loop.run()
        #expect(ends.seen == [.revoked])
        #expect(session.endReason == .tokenRevoked)
        #expect(bystanderEnds.seen.isEmpty && bystander.endReason == nil)
        #expect(noKidEnds.seen.isEmpty)
        // A key replaced under the same kid (a leaked secret's new value) is another key: the
        // session verified by the old one ends.
        let k2Fingerprint = try #require(try set([(k2, "k2")]).keysByID["k2"]?.first?.fingerprint)
        let pinnedEnds = Ends()
        let pinned = VerifiedToken(issuerName: "idp", issuer: "https://idp", subject: "dave", jwtID: "jti-4", clientID: "app", audiences: ["api"],
                                   scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: "k2", algorithm: .ES256,
                                   claims: [:], leewaySeconds: 5, keyFingerprint: k2Fingerprint)
        _ = sessions.open(protocol: .websocket, token: pinned, policy: .close, eventLoop: loop) { pinnedEnds.seen.append($0) }
        loop.run()
        store.replace(issuerName: "idp", keySet: try set([(k2, "k2")]), version: "4")
        loop.run()
        #expect(pinnedEnds.seen.isEmpty, "the same key under its kid")
        store.replace(issuerName: "idp", keySet: try set([(try SigningKey.generate(.ES256), "k2")]), version: "5")
        loop.run()
        #expect(pinnedEnds.seen == [.revoked], "another key under the same kid")
        // A set dropped (max_stale, a reload changing the issuer's settings) tells nothing.
        store.remove(issuerName: "idp")
        loop.run()
        #expect(bystanderEnds.seen.isEmpty && noKidEnds.seen.isEmpty)
    }

    /// A second attacker review kept a stream open after the reload that removed its compromised
    /// issuer: the issuer's set, no longer loaded, told the key check nothing.
    @Test("a reload that removes an issuer (or leaves it without keys) ends the sessions of its tokens; other issuers' stay")
    func issuerRemoved() {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry(), wallClock: { Self.now * 1_000_000_000 })
        let ends = Ends(), otherEnds = Ends()
        let session = sessions.open(protocol: .grpc, token: Self.token(), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        let other = VerifiedToken(issuerName: "partner", issuer: "https://partner", subject: "bob", jwtID: "j", clientID: "c", audiences: ["api"],
                                  scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: "k1", algorithm: .ES256,
                                  claims: [:], leewaySeconds: 5)
        _ = sessions.open(protocol: .grpc, token: other, policy: .close, eventLoop: loop) { otherEnds.seen.append($0) }
        loop.run()
        sessions.issuersRemoved(["idp"])
        loop.run()
        #expect(ends.seen == [.revoked] && session.endReason == .tokenRevoked)
        #expect(otherEnds.seen.isEmpty)
    }

    /// An attacker review kept a WebSocket, an HTTP/2 stream, a gRPC call and an HTTP/1.1 stream
    /// open on a cluster's gateway after the reload that took their issuer's leaked HMAC secret
    /// away: in a cluster such an issuer may get keys from the control plane, so it was not
    /// "removed", and its set, no longer loaded, told the key check nothing.
    @Test("a reload that changes an issuer's key settings ends the sessions of its tokens unless the set now loaded still holds their key; other issuers' stay")
    func keySettingsChanged() throws {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry(), wallClock: { Self.now * 1_000_000_000 })
        let store = KeySetStore()
        let k1 = try SigningKey.generate(.ES256)
        let issuer = IssuerConfig(name: "idp", issuer: "https://idp", audiences: ["api"], algorithms: [.ES256], keySource: .none)
        let set = try JWKSet.parse(Array(JSONWriter.serialize(["keys": .array([k1.publicJWK(keyID: "k1")])]).utf8), issuer: issuer, logger: nil)
        let fingerprint = try #require(set.keysByID["k1"]?.first?.fingerprint)
        func token(_ jti: String, kid: String, issuerName: String = "idp") -> VerifiedToken {
            VerifiedToken(issuerName: issuerName, issuer: "https://" + issuerName, subject: "carol", jwtID: jti, clientID: "app", audiences: ["api"],
                          scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: kid, algorithm: .ES256,
                          claims: [:], leewaySeconds: 5, keyFingerprint: kid == "k1" ? fingerprint : nil)
        }
        store.replace(issuerName: "idp", keySet: set, version: "1")
        let held = Ends(), gone = Ends(), other = Ends()
        _ = sessions.open(protocol: .grpc, token: token("a", kid: "k1"), policy: .close, eventLoop: loop) { held.seen.append($0) }
        _ = sessions.open(protocol: .grpc, token: token("b", kid: "k2"), policy: .close, eventLoop: loop) { gone.seen.append($0) }
        _ = sessions.open(protocol: .grpc, token: token("c", kid: "k9", issuerName: "partner"), policy: .close, eventLoop: loop) { other.seen.append($0) }
        loop.run()
        // The set now loaded holds k1, not k2.
        sessions.issuersReconfigured([issuer], keySettingsChanged: ["idp"], inForce: [issuer], in: store)
        loop.run()
        #expect(held.seen.isEmpty && gone.seen == [.revoked])
        // No set loaded for the issuer any more: its last session ends; another issuer's stays.
        store.remove(issuerName: "idp")
        sessions.issuersReconfigured([issuer], keySettingsChanged: ["idp"], inForce: [issuer], in: store)
        loop.run()
        #expect(held.seen == [.revoked])
        #expect(other.seen.isEmpty)
    }

    /// An attacker review kept WebSockets open after a reload that moved an issuer entry to
    /// another tenant's `iss` (a multi-tenant provider's one key set) or changed its audiences:
    /// new requests with those tokens were refused, their sessions not.
    @Test("a reload that changes an issuer's iss, audiences or algorithms ends the sessions of the tokens that would not pass the new settings, whatever its keys, also those opening after it; a change of audiences that still accepts a token keeps its session")
    func issuerSettingsChanged() throws {
        let loop = EmbeddedEventLoop()
        let sessions = LiveSessions(revocation: nil, registry: PrometheusCollectorRegistry(), wallClock: { Self.now * 1_000_000_000 })
        let store = KeySetStore()
        func issuer(_ iss: String = "https://idp", audiences: [String] = ["api"], algorithms: [JWSAlgorithm] = [.ES256]) -> IssuerConfig {
            IssuerConfig(name: "idp", issuer: iss, audiences: audiences, algorithms: algorithms, keySource: .none)
        }
        for (changed, ends) in [(issuer("https://tenant-b"), true), (issuer(audiences: ["other"]), true), (issuer(algorithms: [.RS256]), true),
                                (issuer(audiences: ["other", "api"]), false)] {
            // The settings the token was admitted under, in force again.
            sessions.issuersReconfigured([], keySettingsChanged: [], inForce: [issuer()], in: store)
            let seen = Ends()
            let session = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, eventLoop: loop) { seen.seen.append($0) }
            loop.run()
            sessions.issuersReconfigured([changed], keySettingsChanged: [], inForce: [changed], in: store)
            loop.run()
            #expect(seen.seen == (ends ? [.revoked] : []), "\(changed.issuer) \(changed.audiences) \(changed.algorithms)")
            session.end(.client)
            // A session of a token admitted before the reload and opening only after it (a
            // WebSocket whose upstream answers late) is checked against the settings in force.
            let late = Ends()
            let lateSession = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, eventLoop: loop) { late.seen.append($0) }
            loop.run()
            #expect(late.seen == (ends ? [.revoked] : []), "opening after the reload: \(changed.issuer) \(changed.audiences) \(changed.algorithms)")
            lateSession.end(.client)
        }
    }

    @Test("a session whose route allows it to outlive its token is never ended by the token")
    func allowPolicy() throws {
        let loop = EmbeddedEventLoop()
        let set = RevocationSet()
        let sessions = Self.registry(set, loop: loop)
        let ends = Ends()
        let session = sessions.open(protocol: .websocket, token: Self.token(exp: Self.now + 1), policy: .allow, eventLoop: loop) { ends.seen.append($0) }
        set.apply(Self.revocation(.jti, "jti-1"), now: Self.now)
        loop.advanceTime(by: .seconds(3600))
        #expect(ends.seen.isEmpty && session.endReason == nil)
        #expect(sessions.watchedCount(on: loop).sessions == 0)
    }

    @Test("a session ends as expired at exp plus the leeway its token was verified under, not before")
    func expiry() throws {
        let loop = EmbeddedEventLoop()
        let sessions = Self.registry(RevocationSet(), loop: loop)
        let ends = Ends()
        let laterEnds = Ends()
        // exp in 10 s, leeway 5 s: due in 15 s. The same issuer's token verified after a reload
        // that set its leeway to 30 s: due in 40 s.
        _ = sessions.open(protocol: .websocket, token: Self.token(exp: Self.now + 10), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        _ = sessions.open(protocol: .websocket, token: Self.token(exp: Self.now + 10, leeway: 30), policy: .close, eventLoop: loop) {
            laterEnds.seen.append($0)
        }
        loop.advanceTime(by: .milliseconds(14_900))
        #expect(ends.seen.isEmpty)
        loop.advanceTime(by: .milliseconds(200))
        #expect(ends.seen == [.expired])
        loop.advanceTime(by: .milliseconds(24_800))
        #expect(laterEnds.seen.isEmpty)
        loop.advanceTime(by: .milliseconds(200))
        #expect(laterEnds.seen == [.expired])
    }

    /// The build before scheduled a timer per session: one added and cancelled on every gRPC call.
    @Test("sessions whose tokens end at the same instant share one timer and all end then; the timer goes with the group's last session, and one opened after it has a new one")
    func sharedExpiryTimer() throws {
        let loop = EmbeddedEventLoop()
        let sessions = Self.registry(RevocationSet(), loop: loop)
        let ends = Ends()
        // Three calls under one token (due in 15 s), one under a token due in 40 s.
        let calls = (0..<3).map { _ in
            sessions.open(protocol: .grpc, token: Self.token(exp: Self.now + 10), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        }
        let later = sessions.open(protocol: .grpc, token: Self.token(sub: "bob", exp: Self.now + 35), policy: .close, eventLoop: loop) { _ in }
        #expect(sessions.watchedCount(on: loop).sessions == 4)
        #expect(sessions.watchedCount(on: loop).timers == 2)
        calls[0].end(.client)
        #expect(sessions.watchedCount(on: loop).timers == 2)
        loop.advanceTime(by: .milliseconds(14_900))
        #expect(ends.seen.isEmpty)
        loop.advanceTime(by: .milliseconds(200))
        #expect(ends.seen == [.expired, .expired])
        #expect(calls[1].endReason == .tokenExpired && calls[2].endReason == .tokenExpired && calls[0].endReason == .client)
        #expect(sessions.watchedCount(on: loop).timers == 1)
        later.end(.upstream)
        #expect(sessions.watchedCount(on: loop) == (0, 0))
        // A group whose last session ended has no timer left; a new session makes its own.
        // (Opened 15.1 s on: due 24.9 s later.)
        let again = sessions.open(protocol: .grpc, token: Self.token(sub: "bob", exp: Self.now + 35), policy: .close, eventLoop: loop) { _ in }
        #expect(sessions.watchedCount(on: loop) == (1, 1))
        loop.advanceTime(by: .seconds(24))
        #expect(again.endReason == nil)
        loop.advanceTime(by: .seconds(1))
        #expect(again.endReason == .tokenExpired)
        #expect(sessions.watchedCount(on: loop) == (0, 0))
    }

    @Test("every protocol and end reason has a metrics slot of its own")
    func metricSlots() {
        #expect(SessionProtocol.allCases.map(\.index) == Array(0..<SessionProtocol.allCases.count))
        #expect(LiveSessions.EndReason.allCases.map(\.index) == Array(0..<LiveSessions.EndReason.allCases.count))
    }

    @Test("a token whose exp lies beyond what nanoseconds can count (a signed exp of 9999999999 or Int64.max) opens a session without an expiry timer instead of trapping; one long past ends at once")
    func farExpiry() throws {
        let loop = EmbeddedEventLoop()
        let sessions = Self.registry(RevocationSet(), loop: loop)
        let ends = Ends()
        for exp in [Int64(9_999_999_999), 253_402_300_799, .max, .max - 3] {
            _ = sessions.open(protocol: .h2, token: Self.token(exp: exp, leeway: 3600), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        }
        loop.advanceTime(by: .hours(24 * 365))
        #expect(ends.seen.isEmpty)
        #expect(LiveSessions.expiryDelay(expiresAt: .min, leewaySeconds: 5, now: Self.now * 1_000_000_000) == .zero)
        #expect(LiveSessions.expiryDelay(expiresAt: -9_000_000_000, leewaySeconds: 0, now: Self.now * 1_000_000_000) == .zero)
        #expect(LiveSessions.expiryDelay(expiresAt: Self.now + 10, leewaySeconds: 5, now: Self.now * 1_000_000_000) == .seconds(15))
    }

    @Test("a token revoked before its session opened ends the session at once")
    func revokedBeforeOpening() throws {
        let loop = EmbeddedEventLoop()
        let set = RevocationSet()
        let sessions = Self.registry(set, loop: loop)
        set.apply(Self.revocation(.subject, "alice"), now: Self.now)
        let ends = Ends()
        _ = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        loop.run()
        #expect(ends.seen == [.revoked])
    }

    @Test("sessions are counted open and closed by protocol and reason; the first reason wins")
    func metrics() throws {
        let loop = EmbeddedEventLoop()
        let set = RevocationSet()
        let registry = PrometheusCollectorRegistry()
        let sessions = Self.registry(set, loop: loop, registry: registry)
        let first = sessions.open(protocol: .websocket, token: Self.token(), policy: .close, eventLoop: loop) { _ in }
        let second = sessions.open(protocol: .websocket, token: nil, policy: .close, eventLoop: loop) { _ in }
        var text = Self.text(registry)
        #expect(text.contains("portcullis_sessions_open{protocol=\"websocket\"} 2"))
        set.apply(Self.revocation(.jti, "jti-1"), now: Self.now)
        loop.run()
        first.end(.client)  // after the token ended it: not counted again
        second.end(.idleTimeout)
        text = Self.text(registry)
        #expect(text.contains("portcullis_sessions_open{protocol=\"websocket\"} 0"))
        #expect(text.contains("portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"token_revoked\"} 1"))
        #expect(text.contains("portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"idle_timeout\"} 1"))
        #expect(!text.contains("reason=\"client\""))
    }

    @Test("a session its token ends is timed from the node learning of the end to its close callback's return, by protocol and reason; one ended otherwise is not")
    func tokenEndCloseTime() throws {
        let loop = EmbeddedEventLoop()
        let set = RevocationSet()
        let registry = PrometheusCollectorRegistry()
        let sessions = Self.registry(set, loop: loop, registry: registry)
        // The close callback takes 30 ms: the time recorded includes it (so it is over 25 ms).
        _ = sessions.open(protocol: .grpc, token: Self.token(), policy: .close, eventLoop: loop) { _ in Thread.sleep(forTimeInterval: 0.03) }
        let other = sessions.open(protocol: .grpc, token: Self.token(sub: "bob", jti: "jti-2"), policy: .close, eventLoop: loop) { _ in }
        _ = sessions.open(protocol: .websocket, token: Self.token(sub: "carol", jti: "jti-3", exp: Self.now + 10, leeway: 0),
                          policy: .close, eventLoop: loop) { _ in }
        // Would expire in the same 11 s, but its client leaves first: not a token end, not timed.
        let left = sessions.open(protocol: .websocket, token: Self.token(sub: "dave", jti: "jti-4", exp: Self.now + 5, leeway: 0),
                                 policy: .close, eventLoop: loop) { _ in }
        set.apply(Self.revocation(.jti, "jti-1"), now: Self.now)
        loop.run()
        other.end(.client)
        left.end(.client)
        loop.advanceTime(by: .seconds(11))
        let text = Self.text(registry)
        let revoked = #"portcullis_token_end_close_seconds_bucket{protocol="grpc",reason="token_revoked","#
        #expect(text.contains(revoked + #"le="0.025"} 0"#), "\(text)")
        #expect(text.contains(revoked + #"le="0.25"} 1"#), "\(text)")
        #expect(text.contains(#"portcullis_token_end_close_seconds_count{protocol="grpc",reason="token_revoked"} 1"#))
        #expect(text.contains(#"portcullis_token_end_close_seconds_count{protocol="websocket",reason="token_expired"} 1"#), "\(text)")
        #expect(text.contains(#"portcullis_sessions_closed_total{protocol="websocket",reason="client"} 1"#))
    }

    /// The build before checked the key only when a key-set change came: a change made while a
    /// WebSocket's upgrade or an exchange's first response was still on its way found no session
    /// to end, and the session opened after it never looked (an attacker review kept such streams
    /// open 12 s after the key's removal, until their exp).
    @Test("a session opening after its token's signing key left the issuer's set, its kid was revoked or its issuer's set went ends at once as revoked; one whose key is still there stays")
    func keyGoneBeforeOpening() throws {
        let loop = EmbeddedEventLoop()
        let store = KeySetStore()
        let sessions = LiveSessions(revocation: nil, keys: store, registry: PrometheusCollectorRegistry(), wallClock: Self.wallClock(loop))
        store.onChange { sessions.keysChanged(in: $0) }
        let k1 = try SigningKey.generate(.ES256), k2 = try SigningKey.generate(.ES256)
        let set = try Self.keySet([(k1, "k1"), (k2, "k2")])
        store.replace(issuerName: "idp", keySet: set, version: "1")
        func token(_ kid: String, issuerName: String = "idp") throws -> VerifiedToken {
            VerifiedToken(issuerName: issuerName, issuer: "https://idp", subject: "alice", jwtID: "j-" + kid, clientID: "app", audiences: ["api"],
                          scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: kid, algorithm: .ES256,
                          claims: [:], leewaySeconds: 5, keyFingerprint: try #require(set.keysByID[kid]?.first?.fingerprint))
        }
        // Both admitted; then k1 leaves the set before either session opens.
        let admittedK1 = try token("k1"), admittedK2 = try token("k2")
        store.replace(issuerName: "idp", keySet: try Self.keySet([(k2, "k2")]), version: "2")
        loop.run()
        let ends = Ends(), keptEnds = Ends()
        let session = sessions.open(protocol: .websocket, token: admittedK1, policy: .close, eventLoop: loop) { ends.seen.append($0) }
        let kept = sessions.open(protocol: .websocket, token: admittedK2, policy: .close, eventLoop: loop) { keptEnds.seen.append($0) }
        loop.run()
        #expect(ends.seen == [.revoked] && session.endReason == .tokenRevoked)
        #expect(keptEnds.seen.isEmpty && kept.endReason == nil)
        // The issuer's set gone (a reload removed the issuer): a session opening fails closed,
        // as a new request would; the one already open stays (a set not loaded tells nothing).
        store.remove(issuerName: "idp")
        loop.run()
        let lateEnds = Ends()
        _ = sessions.open(protocol: .grpc, token: admittedK2, policy: .close, eventLoop: loop) { lateEnds.seen.append($0) }
        loop.run()
        #expect(lateEnds.seen == [.revoked])
        #expect(keptEnds.seen.isEmpty)
        // A kid the cluster revoked (a key record's revocation) is not trusted either.
        store.replace(issuerName: "idp", keySet: try Self.keySet([(k2, "k2")]), version: "3")
        store.setRevokedKeys(["k2": ["*"]])
        loop.run()
        #expect(keptEnds.seen == [.revoked])
    }

    /// The build before looked a kid-less token's key up among the keys without a `kid`, while
    /// the verifier takes a set's only key whatever its `kid`: any key-set change ended such a
    /// session as revoked (an attacker review).
    @Test("a token without kid, verified by its issuer's only key, keeps its session through a key-set refresh that keeps that key, and loses it when that key's kid is revoked or the key changes")
    func kidlessTokenFollowsTheOnlyKey() throws {
        let loop = EmbeddedEventLoop()
        let store = KeySetStore()
        let sessions = LiveSessions(revocation: nil, keys: store, registry: PrometheusCollectorRegistry(), wallClock: Self.wallClock(loop))
        store.onChange { sessions.keysChanged(in: $0) }
        let k1 = try SigningKey.generate(.ES256)
        let set = try Self.keySet([(k1, "k1")])
        store.replace(issuerName: "idp", keySet: set, version: "1")
        let token = VerifiedToken(issuerName: "idp", issuer: "https://idp", subject: "carol", jwtID: "j", clientID: "app", audiences: ["api"],
                                  scopes: [], expiresAt: Self.now + 3600, notBefore: nil, issuedAt: Self.now - 10, keyID: nil, algorithm: .ES256,
                                  claims: [:], leewaySeconds: 5, keyFingerprint: try #require(set.keysByID["k1"]?.first?.fingerprint))
        let ends = Ends()
        _ = sessions.open(protocol: .websocket, token: token, policy: .close, eventLoop: loop) { ends.seen.append($0) }
        loop.run()
        store.replace(issuerName: "idp", keySet: try Self.keySet([(k1, "k1")]), version: "2")
        loop.run()
        #expect(ends.seen.isEmpty, "the same only key")
        // The cluster revoking the key by its kid ends the session too, though the token names no kid.
        store.setRevokedKeys(["k1": ["*"]])
        loop.run()
        #expect(ends.seen == [.revoked], "the key's kid was revoked")
        store.setRevokedKeys([:])
        let laterEnds = Ends()
        _ = sessions.open(protocol: .websocket, token: token, policy: .close, eventLoop: loop) { laterEnds.seen.append($0) }
        loop.run()
        store.replace(issuerName: "idp", keySet: try Self.keySet([(k1, "k1"), (try SigningKey.generate(.ES256), "k2")]), version: "3")
        loop.run()
        #expect(laterEnds.seen == [.revoked], "with two keys the verifier would take no kid-less token")
    }

    /// The build before asked the same question as a new request, whose answer while stale is
    /// "stale", not "revoked": a revocation a node applied while stale never ended its sessions
    /// (an attacker review: every stream open 15 s later, `propagation.complete` reported).
    @Test("a revocation applied while the node's revocation state is stale ends the sessions of its tokens all the same")
    func revocationWhileStaleEndsSessions() throws {
        let loop = EmbeddedEventLoop()
        let monotonic = NIOLockedValueBox<UInt64>(1_000_000_000)
        let staleness = StalenessClock(limit: .seconds(1), now: { monotonic.withLockedValue { $0 } })
        let set = RevocationSet(staleness: staleness)
        let sessions = Self.registry(set, loop: loop)
        let ends = Ends()
        _ = sessions.open(protocol: .grpc, token: Self.token(), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        loop.run()
        monotonic.withLockedValue { $0 += 5_000_000_000 }
        guard case .stale = set.check(Self.token(sub: "bob", jti: "other")) else {
            Issue.record("the state should be stale")
            return
        }
        #expect(ends.seen.isEmpty, "stale alone ends nothing")
        set.apply(Self.revocation(.subject, "alice"), now: Self.now)
        loop.run()
        #expect(ends.seen == [.revoked])
    }

    /// Timers run on the monotonic clock and `exp` is wall-clock time: the build before armed
    /// one timer for the whole delay, and a step of the wall clock forward left sessions open
    /// that new requests already found expired (an attacker review: +120 s, still open 18 s on).
    @Test("a step of the wall clock past a session's exp ends it within the 30 s recheck; a step back keeps it open until exp by the wall clock")
    func wallClockSteps() throws {
        let loop = EmbeddedEventLoop()
        let step = NIOLockedValueBox<Int64>(0)
        let sessions = LiveSessions(revocation: RevocationSet(), registry: PrometheusCollectorRegistry(), wallClock: {
            Self.now * 1_000_000_000 + Int64(loop.now.uptimeNanoseconds) + step.withLockedValue { $0 }
        })
        let ends = Ends(), backEnds = Ends()
        _ = sessions.open(protocol: .websocket, token: Self.token(exp: Self.now + 3600, leeway: 0), policy: .close, eventLoop: loop) { ends.seen.append($0) }
        loop.advanceTime(by: .seconds(5))
        step.withLockedValue { $0 = 3600 * 1_000_000_000 }
        loop.advanceTime(by: .seconds(30))
        #expect(ends.seen == [.expired], "the wall clock says the token ended")
        // Back by an hour: the monotonic delay (60 s) passes, the wall clock says an hour is left.
        _ = sessions.open(protocol: .websocket, token: Self.token(sub: "bob", exp: Self.now + 3600 + 35 + 60, leeway: 0),
                          policy: .close, eventLoop: loop) { backEnds.seen.append($0) }
        step.withLockedValue { $0 = 0 }
        loop.advanceTime(by: .seconds(120))
        #expect(backEnds.seen.isEmpty, "ended by the monotonic delay while the wall clock says an hour is left")
        loop.advanceTime(by: .seconds(3600))
        #expect(backEnds.seen == [.expired])
    }

    static func keySet(_ keys: [(SigningKey, String)]) throws -> JWKSet {
        let issuer = IssuerConfig(name: "idp", issuer: "https://idp", audiences: ["api"], algorithms: [.ES256], keySource: .none)
        return try JWKSet.parse(Array(JSONWriter.serialize(["keys": .array(keys.map { $0.0.publicJWK(keyID: $0.1) })]).utf8), issuer: issuer, logger: nil)
    }

    /// The registry's wall clock, moving with `loop`'s time from `now`.
    static func wallClock(_ loop: EmbeddedEventLoop) -> @Sendable () -> Int64 {
        { now * 1_000_000_000 + Int64(loop.now.uptimeNanoseconds) }
    }

    static func text(_ registry: PrometheusCollectorRegistry) -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
