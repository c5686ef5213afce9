import NIOCore
import Synchronization

/// The TLS setup a listener hands to new connections, replaced on SIGHUP, and the connections it
/// has open. Open connections keep the setup they started with, except that a reload changing
/// which client certificates are trusted (`ListenerTLS.clientTrust`) quiesces them: each closes
/// once its requests in flight are answered, or at once when idle, and its client reconnects
/// under the new trust. Until it closes, its certificate no longer counts (`ConnectionTrust`).
/// Otherwise a kept-alive connection whose certificate the old `client_ca` verified would go on
/// being admitted after the operator had replaced that CA, until the client closed it.
final class ListenerTLSBox: Sendable {
    private struct State {
        var tls: ListenerTLS
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    /// Taken when a connection opens or closes and on a reload, never per request.
    private let state: Mutex<State>
    /// Counts the reloads that changed the client trust; read per request (`ConnectionTrust`).
    private let trustGeneration = Atomic<Int>(0)

    init(_ tls: ListenerTLS) {
        state = Mutex(State(tls: tls))
    }

    var current: ListenerTLS { state.withLock { $0.tls } }

    /// How many reloads have changed the client trust so far.
    var generation: Int { trustGeneration.load(ordering: .acquiring) }

    /// The setup for a new connection and the trust generation it opens under; the connection is
    /// tracked from now until it closes. Taken under the same lock as `replace`, so no connection
    /// misses a reload that changes its trust.
    func open(_ channel: any Channel) -> (tls: ListenerTLS, generation: Int) {
        let id = ObjectIdentifier(channel)
        let opened = state.withLock { state in
            state.open[id] = channel
            return (state.tls, trustGeneration.load(ordering: .relaxed))
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.open.removeValue(forKey: id) }
        }
        return opened
    }

    /// Puts `new` in force for new connections; when it trusts other client certificates than
    /// the setup it replaces, quiesces every open connection. Returns how many it quiesced.
    @discardableResult
    func replace(_ new: ListenerTLS) -> Int {
        let quiesced: [any Channel] = state.withLock { state in
            let changed = state.tls.clientTrust != new.clientTrust
            state.tls = new
            guard changed else { return [] }
            trustGeneration.add(1, ordering: .releasing)
            return Array(state.open.values)
        }
        for channel in quiesced {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        return quiesced.count
    }
}
