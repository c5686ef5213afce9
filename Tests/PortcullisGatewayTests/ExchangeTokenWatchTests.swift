@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import PortcullisCluster
import PortcullisJOSE
import Prometheus
import Testing

/// The HTTP/1.1 exchange's token watch against a real `LiveSessions` and `RevocationSet`, on an
/// `EmbeddedEventLoop`.
@Suite("HTTP/1.1 exchanges: a session only for the long ones")
struct ExchangeTokenWatchTests {
    final class Calls {
        var long = 0
        var ends: [LiveSessions.TokenEnd] = []
    }

    /// An embedded loop, a registry wired to a revocation set as the gateway wires it (its wall
    /// clock standing still: the loop's clock jumps to the real one for the timer), the calls the
    /// watch makes, and a plaintext connection's client.
    static func fixture() -> (EmbeddedEventLoop, RevocationSet, LiveSessions, Calls, HeaderRewriter.ClientInfo) {
        let set = RevocationSet()
        let sessions = LiveSessions(revocation: set, registry: PrometheusCollectorRegistry(), wallClock: { LiveSessionsTests.now * 1_000_000_000 })
        set.onChange { sessions.revocationChanged() }
        return (EmbeddedEventLoop(), set, sessions, Calls(), HeaderRewriter.ClientInfo(address: "192.0.2.1", isTLS: false))
    }

    @Test("an exchange admitted with a token opens no session until it turns out long; then its token's revocation ends it once, and the next exchange starts unwatched")
    func longExchangeEndsWithItsToken() throws {
        let (loop, set, sessions, calls, client) = Self.fixture()
        var watch = ExchangeTokenWatch()
        watch.start(eventLoop: loop) { calls.long += 1 }

        // Admitted long enough ago that the timer's deadline has passed when it runs.
        watch.exchangeAdmitted(token: LiveSessionsTests.token(), reliesOnCertificate: false, at: .now() - .seconds(2))
        #expect(watch.isWatched)
        #expect(sessions.watchedCount(on: loop).sessions == 0)
        // The timer runs at a real deadline (`DeadlineTimer`): the loop's clock is taken there.
        loop.advanceTime(to: .now() + .milliseconds(10))
        #expect(calls.long == 1)
        watch.openIfWatched(in: sessions, client: client, eventLoop: loop) { calls.ends.append($0) }
        // Asked again at the next flush: still one session.
        watch.openIfWatched(in: sessions, client: client, eventLoop: loop) { calls.ends.append($0) }
        #expect(sessions.watchedCount(on: loop).sessions == 1)

        set.apply(LiveSessionsTests.revocation(.subject, "alice"), now: LiveSessionsTests.now)
        loop.run()
        #expect(calls.ends == [.revoked])
        watch.tokenEnded()
        #expect(!watch.isWatched)
        #expect(sessions.watchedCount(on: loop).sessions == 0)
        // The next exchange on the connection, on a route that lets it outlive its token.
        watch.exchangeAdmitted(token: nil, reliesOnCertificate: false, at: .now())
        watch.openIfWatched(in: sessions, client: client, eventLoop: loop) { calls.ends.append($0) }
        #expect(sessions.watchedCount(on: loop).sessions == 0)
        watch.stop()
    }

    @Test("an exchange that ends before it turns out long opens no session, its timer fires for nothing, and a later revocation of its token ends nothing; an open session ends with the exchange as the upstream's or the client's")
    func shortExchangeOpensNothing() throws {
        let (loop, set, sessions, calls, client) = Self.fixture()
        var watch = ExchangeTokenWatch()
        watch.start(eventLoop: loop) { calls.long += 1 }

        watch.exchangeAdmitted(token: LiveSessionsTests.token(), reliesOnCertificate: false, at: .now() - .seconds(2))
        watch.exchangeEnded(.upstream)
        loop.advanceTime(to: .now() + .milliseconds(10))
        #expect(calls.long == 0 && !watch.isWatched)
        watch.openIfWatched(in: sessions, client: client, eventLoop: loop) { calls.ends.append($0) }
        #expect(sessions.watchedCount(on: loop).sessions == 0)

        // A long one, ended by the upstream's answer, then one ended by the handler going.
        for reason in [LiveSessions.EndReason.upstream, .client] {
            watch.exchangeAdmitted(token: LiveSessionsTests.token(), reliesOnCertificate: false, at: .now())
            watch.openIfWatched(in: sessions, client: client, eventLoop: loop) { calls.ends.append($0) }
            #expect(sessions.watchedCount(on: loop).sessions == 1)
            if reason == .upstream { watch.exchangeEnded(reason) } else { watch.stop() }
            #expect(sessions.watchedCount(on: loop).sessions == 0, "\(reason)")
        }
        set.apply(LiveSessionsTests.revocation(.subject, "alice"), now: LiveSessionsTests.now)
        loop.run()
        #expect(calls.ends.isEmpty)
    }
}
