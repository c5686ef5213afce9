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
/// token bound to it — until its client closed it.
final class ListenerSetup: Sendable {
    struct Setup: Sendable {
        var tls: ListenerTLS?
        var trustedProxies: TrustedProxies?
    }

    private struct State {
        var setup: Setup
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    /// Taken when a TLS connection opens or closes, and on a reload; never per request.
    private let state: Mutex<State>
    /// Counts the reloads that narrowed the client trust; read per request that needs the client
    /// certificate (one atomic load).
    private let trustGeneration = Atomic<Int>(0)

    init(_ setup: Setup) {
        state = Mutex(State(setup: setup))
    }

    /// How many reloads have narrowed the client trust so far.
    var generation: Int { trustGeneration.load(ordering: .acquiring) }

    /// The setup for a new connection and the trust generation it opens under. A TLS connection
    /// is tracked until it closes. Taken under the lock `replace` takes,
    /// so that no connection opens with the replaced TLS context under the new generation.
    func open(_ channel: any Channel) -> (setup: Setup, generation: Int) {
        let id = ObjectIdentifier(channel)
        let (opened, tracked) = state.withLock { state in
            let tracked = state.setup.tls != nil
            if tracked { state.open[id] = channel }
            return ((state.setup, trustGeneration.load(ordering: .relaxed)), tracked)
        }
        if tracked {
            channel.closeFuture.whenComplete { [weak self] _ in
                _ = self?.state.withLock { $0.open.removeValue(forKey: id) }
            }
        }
        return opened
    }

    /// Puts `new` in force for new connections. When its client trust narrows the one it
    /// replaces, advances the trust generation and returns the connections opened under the old
    /// trust (the caller tells them); otherwise returns nil.
    func replace(_ new: Setup) -> [any Channel]? {
        state.withLock { state in
            let changed = ClientTrust.narrows(from: state.setup.tls?.clientTrust, to: new.tls?.clientTrust)
            state.setup = new
            guard changed else { return nil }
            trustGeneration.add(1, ordering: .releasing)
            let open = Array(state.open.values)
            state.open = [:]
            return open
        }
    }
}
