import NIOCore
import Synchronization

/// What the public listener hands a new connection — its TLS and the proxies trusted to name the
/// client — replaced on SIGHUP, and its open TLS connections. Open connections keep the setup
/// they started with, except that a reload narrowing which client certificates are trusted
/// (`ClientTrust.narrows`: a root removed, or a certificate newly required) advances a trust
/// generation: from then on a certificate verified on an older connection counts for nothing
/// (`HeaderRewriter.ClientInfo.clientCertificateThumbprint`), each such connection is told
/// (`ClientTrustReplacedEvent`: it closes once its requests in flight are answered), and the
/// long-lived sessions admitted on the strength of such a certificate end
/// (`LiveSessions.clientTrustReplaced`). Otherwise a connection whose certificate the replaced
/// `client_ca` verified would go on being admitted — to a route requiring a certificate, with a
/// token bound to it — until its client closed it. Likewise a connection from a trusted proxy
/// that a reload no longer trusts is told, so that it stops naming the client (and choosing
/// its rate-limit key) once its request in flight is answered.
final class ListenerSetup: Sendable {
    struct Setup: Sendable {
        var tls: ListenerTLS?
        var trustedProxies: TrustedProxies?
    }

    private struct State {
        var setup: Setup
        /// Open TLS connections, told when the client trust narrows.
        var open: [ObjectIdentifier: any Channel] = [:]
        /// Open connections from trusted proxies, told when a reload no longer trusts them.
        var fromProxies: [ObjectIdentifier: (channel: any Channel, peer: IPAddress)] = [:]
    }

    /// The open connections a reload has told to close (`replace`).
    struct Replaced {
        /// Connections opened under a client trust the new one narrows (nil when it does not).
        var underNarrowedTrust: [any Channel]?
        /// Connections from proxies the new setup no longer trusts.
        var fromDistrustedProxies: [any Channel] = []
    }

    /// Taken when a connection opens, when a TLS connection or one from a trusted proxy closes,
    /// and on a reload; never per request.
    private let state: Mutex<State>
    /// Counts the reloads that narrowed the client trust; read per request that needs the client
    /// certificate (one atomic load).
    private let trustGeneration = Atomic<Int>(0)

    init(_ setup: Setup) {
        state = Mutex(State(setup: setup))
    }

    /// How many reloads have narrowed the client trust so far.
    var generation: Int { trustGeneration.load(ordering: .acquiring) }

    /// The setup for a new connection from `peer` (the TCP peer, or the address a PROXY header
    /// gave) and the trust generation it opens under. A TLS connection, and one from a trusted
    /// proxy, is tracked until it closes. Taken under the lock `replace` takes, so that no
    /// connection opens with the replaced TLS context under the new generation.
    func open(_ channel: any Channel, peer: String? = nil) -> (setup: Setup, generation: Int) {
        let id = ObjectIdentifier(channel)
        let (opened, tracked) = state.withLock { state in
            var tracked = false
            if state.setup.tls != nil {
                state.open[id] = channel
                tracked = true
            }
            if let trusted = state.setup.trustedProxies, let proxy = peer.flatMap({ IPAddress($0) }), trusted.trusts(proxy) {
                state.fromProxies[id] = (channel, proxy)
                tracked = true
            }
            return ((state.setup, trustGeneration.load(ordering: .relaxed)), tracked)
        }
        if tracked {
            channel.closeFuture.whenComplete { [weak self] _ in
                self?.state.withLock { state in
                    state.open.removeValue(forKey: id)
                    state.fromProxies.removeValue(forKey: id)
                }
            }
        }
        return opened
    }

    /// Whether a connection from `peer` that the setup it opened under (`trusted`) trusted as a
    /// proxy is trusted by the setup in force: a reload that stopped trusting it before the
    /// connection's protocol handlers were in place told a pipeline that could not hear it. True
    /// for a connection that was no proxy's. Asked once per connection, as its protocol is known.
    func stillTrustsProxy(_ peer: String?, openedWith trusted: TrustedProxies?) -> Bool {
        guard let trusted, let address = peer.flatMap({ IPAddress($0) }), trusted.trusts(address) else { return true }
        return state.withLock { $0.setup.trustedProxies?.trusts(address) == true }
    }

    /// Puts `new` in force for new connections. When its client trust narrows the one it
    /// replaces, advances the trust generation; returns the open connections to tell (the caller
    /// tells them): those opened under the narrowed trust, and those from proxies `new` does not
    /// trust.
    func replace(_ new: Setup) -> Replaced {
        state.withLock { state in
            let narrowed = ClientTrust.narrows(from: state.setup.tls?.clientTrust, to: new.tls?.clientTrust)
            state.setup = new
            var replaced = Replaced()
            let distrusted = state.fromProxies.filter { new.trustedProxies?.trusts($0.value.peer) != true }
            for id in distrusted.keys { state.fromProxies.removeValue(forKey: id) }
            guard narrowed else {
                replaced.fromDistrustedProxies = distrusted.values.map(\.channel)
                return replaced
            }
            trustGeneration.add(1, ordering: .releasing)
            replaced.underNarrowedTrust = Array(state.open.values)
            // A TLS connection from a distrusted proxy is told once.
            replaced.fromDistrustedProxies = distrusted.filter { state.open[$0.key] == nil }.values.map(\.channel)
            state.open = [:]
            return replaced
        }
    }
}
