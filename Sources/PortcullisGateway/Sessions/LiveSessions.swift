import Foundation
import NIOCore
import PortcullisCluster
import PortcullisJOSE
import PortcullisObservability
import Prometheus
import Synchronization

/// The node's long-lived connections and streams (WebSockets, gRPC calls, HTTP/2 streams, HTTP/1.1
/// exchanges that outlast one read of their upstream or one second), each with the token it was
/// admitted with, so that one ends when its token does: when the cluster revokes the token (by
/// jti, subject or client cut-off, or its signing key) or it reaches `exp` plus the leeway it was
/// verified under, whichever comes first. Protocol-neutral: a protocol handler opens a
/// `LiveSession` with a callback that closes its connection or stream the protocol's way
/// (WebSocket close 1008, RST_STREAM, gRPC status 16, a reset HTTP/1.1 connection), and reports
/// how it ended.
///
/// Sessions are kept per event loop and only touched there. The sessions of a loop whose tokens
/// end at the same instant share one timer (`ExpiryGroup`): the calls of one client carry one
/// token, and a timer per call was a scheduled task added and cancelled on every gRPC call.
/// Locks: opening a session takes the shard registry's lock (to find the loop's shard), one of
/// `SessionMetrics` and one of the key store's stripes (`KeySetStore.snapshot`, to check that
/// the token's key is still trusted), and once the node has been reloaded the one lock of the
/// issuers in force, shared by every loop (to look up the token's issuer's settings; the check
/// runs outside it); ending one takes one of `SessionMetrics` — uncontended, but on the request
/// path of every HTTP/2 stream admitted with a token; a revocation change takes the registry's
/// lock once to list the loops. No lock is taken per frame.
/// A session admitted on the strength of its connection's client certificate (a route requiring
/// one, a token bound to one) is kept whatever its route's `on_token_end`, and ends when a reload
/// replaces the trust that verified the certificate (`clientTrustReplaced`).
/// A revocation change (`revocationChanged`, from `RevocationSet.onChange`) re-checks every
/// session whose route closes on token end, on its own loop, against the revocation list
/// however stale (`RevocationCheck.revokes`); a key-set change (`keysChanged`, from `KeySetStore.onChange`) checks that each token's
/// signing key is still in its issuer's set.
final class LiveSessions: Sendable {
    /// Why a session ended, a label of `portcullis_sessions_closed_total`.
    enum EndReason: String, Sendable, CaseIterable {
        /// The cluster revoked its token.
        case tokenRevoked = "token_revoked"
        /// Its token reached `exp` plus the issuer's leeway.
        case tokenExpired = "token_expired"
        /// No traffic for the route's idle timeout.
        case idleTimeout = "idle_timeout"
        /// Open for the route's maximum lifetime.
        case maxLifetime = "max_lifetime"
        /// A peer sent a frame or message over the route's limit.
        case tooLarge = "too_large"
        /// A peer broke the protocol.
        case protocolError = "protocol_error"
        /// The client closed it (or its connection).
        case client
        /// The upstream closed it (or its connection).
        case upstream
        /// The node is shutting down.
        case draining
        /// A reload replaced the trust that verified the client certificate it was admitted with.
        case clientTrustReplaced = "client_trust_replaced"
    }

    /// How a session's credentials ended — its token, or the trust in its client certificate:
    /// what the close callback is told.
    enum TokenEnd: Equatable, Sendable {
        case revoked
        case expired
        case clientTrustReplaced

        var reason: EndReason {
            switch self {
            case .revoked: .tokenRevoked
            case .expired: .tokenExpired
            case .clientTrustReplaced: .clientTrustReplaced
            }
        }

        /// A short reason for the peer (a WebSocket close reason is at most 123 bytes).
        var message: String {
            switch self {
            case .revoked: "token revoked"
            case .expired: "token expired"
            case .clientTrustReplaced: "client certificate no longer trusted"
            }
        }

        /// The answer to a request it ends before its response has begun: RFC 6750's
        /// `invalid_token`, challenge included, as to a token refused at admission; for a
        /// certificate no longer trusted, `client_certificate_required` as at admission.
        func response(realm: String) -> ErrorResponse {
            guard self != .clientTrustReplaced else {
                return ErrorResponse(status: .forbidden, error: "client_certificate_required",
                                     description: "the client certificate is no longer trusted; reconnect with one the gateway trusts")
            }
            return ErrorResponse(AuthFailure(status: .unauthorized, errorCode: "invalid_token", description: message,
                                             reason: reason.rawValue, scope: nil), realm: realm)
        }
    }

    private let revocation: (any RevocationCheck)?
    /// The node's key sets, which a session opening checks its token's key against; nil where
    /// the caller has none (tests).
    private let keys: KeySetStore?
    /// Unix time in nanoseconds (a parameter so that tests can move it).
    private let wallClock: @Sendable () -> Int64
    private let metrics: SessionMetrics
    private let shards = Mutex<[ObjectIdentifier: NIOLoopBound<Shard>]>([:])
    /// The issuers in force since the last reload (`issuersReconfigured`), by name; nil before
    /// any. A session opening checks its token against its issuer's, as a new request would be:
    /// one admitted before a reload and opened after it (a WebSocket whose upstream answers
    /// late, an HTTP/1.1 exchange after its first second) was not there for the reload's sweep.
    private let issuersInForce = Mutex<[String: IssuerConfig]?>(nil)
    /// Whether `issuersInForce` was set: until the first reload, opening takes no lock for it.
    private let reloaded = Atomic<Bool>(false)

    init(revocation: (any RevocationCheck)?, keys: KeySetStore? = nil, registry: PrometheusCollectorRegistry,
         wallClock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1e9) }) {
        self.revocation = revocation
        self.keys = keys
        self.wallClock = wallClock
        self.metrics = SessionMetrics(registry: registry)
    }

    /// Opens a session on `eventLoop` (the caller runs there). `onTokenEnd` runs on that loop at
    /// most once, when `token` ends and `policy` is `.close`, or when `certificate` (the
    /// connection of a session admitted on the strength of its client certificate) loses the
    /// trust that verified it; it should close the connection or stream and need not call `end`
    /// (the session already counts as ended). The caller calls `end(_:)` when the session ends
    /// any other way.
    func open(protocol name: SessionProtocol, token: VerifiedToken?, policy: TokenEndPolicy, certificate: HeaderRewriter.ClientInfo? = nil,
              eventLoop: any EventLoop, onTokenEnd: @escaping (TokenEnd) -> Void) -> LiveSession {
        eventLoop.preconditionInEventLoop()
        let watched = policy == .close ? token : nil
        let session = LiveSession(owner: self, protocol: name, token: watched, certificate: certificate, eventLoop: eventLoop,
                                  openGauge: metrics.opened(protocol: name), onTokenEnd: onTokenEnd)
        guard watched != nil || certificate != nil else { return session }
        let shard = shard(for: eventLoop)
        session.shard = shard
        shard.sessions[ObjectIdentifier(session)] = session
        // A reload replaced the trust between admission and now: the sweep found nothing to end.
        if let certificate, !certificate.certificateTrustIsCurrent {
            eventLoop.assumeIsolated().execute { session.tokenEnded(.clientTrustReplaced) }
            return session
        }
        guard let watched else { return session }
        // Already past exp, or ended between admission and now — revoked, or its signing key or
        // issuer removed (a key-set change made before the session was registered reaches no
        // session to end, and would leave the stream open after its key's removal) —
        // ends at once, after the caller has its handle. Registered first, so that a change
        // made from here on finds it.
        if let delay = Self.expiryDelay(expiresAt: watched.expiresAt, leewaySeconds: watched.leewaySeconds, now: wallClock()) {
            // Not nil: `exp` plus leeway did not overflow.
            let closesAt = watched.expiresAt + Int64(watched.leewaySeconds)
            let group = shard.expiries[closesAt] ?? expiryGroup(closesAt: closesAt, in: delay, shard: shard, eventLoop: eventLoop)
            group.sessions[ObjectIdentifier(session)] = session
            session.expiry = group
        }
        if isRevoked(watched) || keys.map({ !Self.trusts($0.snapshot(), watched, opening: true) }) == true
            || (reloaded.load(ordering: .acquiring) && issuersInForce.withLock({ $0?[watched.issuerName] }).map { !Self.passes(watched, $0) } == true) {
            eventLoop.assumeIsolated().execute { session.tokenEnded(.revoked) }
        }
        return session
    }

    /// The longest an expiry timer waits before it reads the wall clock again. Timers run on the
    /// monotonic clock, `exp` is wall-clock time: a timer armed for the whole delay would miss a
    /// step of the wall clock forward (leaving sessions open that new requests already find
    /// expired), and a step back would close sessions early.
    static let expiryRecheck: TimeAmount = .seconds(30)

    /// A timer for the sessions of `shard` whose tokens end at `closesAt` (Unix seconds), due in
    /// `delay`; it ends every session it holds then.
    private func expiryGroup(closesAt: Int64, in delay: TimeAmount, shard: Shard, eventLoop: any EventLoop) -> ExpiryGroup {
        let group = ExpiryGroup(closesAt: closesAt)
        shard.expiries[closesAt] = group
        arm(group, in: delay, shard: shard, eventLoop: eventLoop)
        return group
    }

    /// Schedules `group`'s timer for `delay`, or `expiryRecheck` if sooner; when it fires before
    /// the wall clock says the tokens have ended, it is armed again for what is left.
    private func arm(_ group: ExpiryGroup, in delay: TimeAmount, shard: Shard, eventLoop: any EventLoop) {
        let due = NIODeadline.now() + delay
        group.timer = eventLoop.assumeIsolated().scheduleTask(in: min(delay, Self.expiryRecheck)) { [self, metrics, wallClock] in
            group.timer = nil
            if let left = Self.expiryDelay(expiresAt: group.closesAt, leewaySeconds: 0, now: wallClock()), left > .zero {
                arm(group, in: left, shard: shard, eventLoop: eventLoop)
                return
            }
            if shard.expiries[group.closesAt] === group { shard.expiries[group.closesAt] = nil }
            for session in Array(group.sessions.values) where session.tokenEnded(.expired) {
                metrics.closedForToken(protocol: session.protocolName, end: .expired, after: max(.zero, .now() - due))
            }
        }
    }

    /// How long until `exp` plus the leeway, from `now` (nanoseconds since the epoch); zero when
    /// past, nil when beyond what nanoseconds since the epoch can count (after the year 2262: a
    /// signed `exp` of 9999999999 or more, which a verifier accepts, must not overflow and trap).
    static func expiryDelay(expiresAt: Int64, leewaySeconds: Int, now: Int64) -> TimeAmount? {
        let (seconds, overflowed) = expiresAt.addingReportingOverflow(Int64(leewaySeconds))
        let (closesAt, tooLarge) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflowed { return expiresAt > 0 ? nil : .zero }
        if tooLarge { return seconds > 0 ? nil : .zero }
        let (remaining, underflowed) = closesAt.subtractingReportingOverflow(now)
        return underflowed || remaining <= 0 ? .zero : .nanoseconds(remaining)
    }

    /// The cluster's revocations changed: every watched session's token is checked again, on its
    /// own event loop. Called from the revocation sync; returns at once. Each session this ends is
    /// timed from this call to its close callback's return (`portcullis_token_end_close_seconds`):
    /// the part of a revocation's reach that is this node's own.
    func revocationChanged() {
        guard revocation != nil else { return }
        endRevoked { [self] in { token in self.isRevoked(token) } }
    }

    /// The node's key sets changed (a reload, a key set's refresh, a cluster record): a session
    /// whose token's signing key the issuer's set no longer holds — none under its `kid` (or
    /// among the keys without one) with the same fingerprint, so a secret replaced under the same
    /// `kid` counts as gone — ends as revoked, on its own loop. A set not loaded tells nothing (new
    /// requests of its issuer fail closed; sessions stay). So a reload removing a leaked key ends
    /// its tokens' streams, not their `exp`.
    func keysChanged(in store: KeySetStore) {
        endRevoked {
            let snapshot = store.snapshot()
            return { token in !Self.trusts(snapshot, token, opening: false) }
        }
    }

    /// Whether `snapshot` still trusts the key that signed `token`
    /// (`KeySetStore.Snapshot.stillTrusts`). An issuer whose set is not loaded tells nothing
    /// about an open session (new requests of its issuer fail closed; sessions stay), but a
    /// session `opening` is a request still: it fails closed as one would.
    static func trusts(_ snapshot: KeySetStore.Snapshot, _ token: VerifiedToken, opening: Bool) -> Bool {
        snapshot.stillTrusts(token) ?? !opening
    }

    /// A reload removed these issuers: the sessions admitted with their tokens end as revoked
    /// (the issuer's key set, left unloaded, tells `keysChanged` nothing, so a stream would
    /// otherwise stay open after the reload that removed its compromised issuer).
    func issuersRemoved(_ names: Set<String>) {
        guard !names.isEmpty else { return }
        endRevoked { { token in names.contains(token.issuerName) } }
    }

    /// A reload kept these issuers with other settings (`IssuerConfig.hasSameAdmission`): a
    /// session of their tokens ends when its token would not pass the new ones — its `iss` is no
    /// longer the issuer's (a multi-tenant provider's tenant moved), none of its audiences is
    /// accepted, its algorithm is not allowed. For those in `keySettingsChanged` (key source,
    /// algorithms, HMAC secrets), it also ends unless the set now loaded still holds its key: a
    /// set not loaded ends it, as it fails a new request — the new source not read yet, or, in a
    /// cluster, no record for an issuer the file left without keys of its own (`keysChanged`
    /// takes a set not loaded as telling nothing).
    ///
    /// `inForce` is every issuer of the new configuration: from now on a session opening is
    /// checked against its issuer's settings there too.
    func issuersReconfigured(_ issuers: [IssuerConfig], keySettingsChanged: Set<String>, inForce: [IssuerConfig], in store: KeySetStore) {
        issuersInForce.withLock { $0 = Dictionary(inForce.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }) }
        reloaded.store(true, ordering: .releasing)
        guard !issuers.isEmpty else { return }
        let byName = Dictionary(issuers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        endRevoked {
            let snapshot = store.snapshot()
            return { token in
                guard let issuer = byName[token.issuerName] else { return false }
                if !Self.passes(token, issuer) { return true }
                return keySettingsChanged.contains(issuer.name) && snapshot.stillTrusts(token) != true
            }
        }
    }

    /// Whether `token` passes `issuer`'s settings as far as what it says goes: its `iss`, one of
    /// its audiences, its algorithm.
    static func passes(_ token: VerifiedToken, _ issuer: IssuerConfig) -> Bool {
        ExactString.equal(token.issuer, issuer.issuer) && issuer.algorithms.contains(token.algorithm)
            && token.audiences.contains { audience in issuer.audiences.contains { ExactString.equal($0, audience) } }
    }

    /// Ends as revoked, on each loop, the watched sessions whose token the check (made once per
    /// loop, when it runs there) says has ended; each is timed from this call to its close
    /// callback's return (`portcullis_token_end_close_seconds`).
    private func endRevoked(_ makeCheck: @escaping @Sendable () -> (VerifiedToken) -> Bool) {
        let learnedAt = NIODeadline.now()
        let loops = shards.withLock { Array($0.values) }
        for shard in loops {
            shard.eventLoop.execute { [self] in
                let ended = makeCheck()
                for session in Array(shard.value.sessions.values) {
                    guard let token = session.token, ended(token), session.tokenEnded(.revoked) else { continue }
                    metrics.closedForToken(protocol: session.protocolName, end: .revoked, after: .now() - learnedAt)
                }
            }
        }
    }

    /// A reload replaced the listener's client trust (`ListenerSetup`): every session admitted on
    /// the strength of a certificate verified under the old trust ends, on its own loop.
    func clientTrustReplaced() {
        let loops = shards.withLock { Array($0.values) }
        for shard in loops {
            shard.eventLoop.execute {
                for session in Array(shard.value.sessions.values) {
                    guard let certificate = session.certificate, !certificate.certificateTrustIsCurrent else { continue }
                    session.tokenEnded(.clientTrustReplaced)
                }
            }
        }
    }

    /// Open sessions watched for token end on `eventLoop`, and their expiry timers (tests).
    func watchedCount(on eventLoop: any EventLoop) -> (sessions: Int, timers: Int) {
        let shard = shard(for: eventLoop)
        return (shard.sessions.count, shard.expiries.count)
    }

    /// Whether the node's revocation list revokes `token`, however stale: a stale state alone
    /// ends no session (new requests fail closed), but a revocation applied while stale does.
    private func isRevoked(_ token: VerifiedToken) -> Bool {
        revocation?.revokes(token) ?? false
    }

    private func shard(for eventLoop: any EventLoop) -> Shard {
        let bound = shards.withLock { shards in
            if let existing = shards[ObjectIdentifier(eventLoop)] { return existing }
            let created = NIOLoopBound(Shard(), eventLoop: eventLoop)
            shards[ObjectIdentifier(eventLoop)] = created
            return created
        }
        return bound.value
    }

    /// `session` ended: it leaves its loop's shard and its expiry group, whose timer is cancelled
    /// with its last session.
    func ended(_ session: LiveSession, reason: EndReason) {
        let id = ObjectIdentifier(session)
        if let shard = session.shard {
            shard.sessions[id] = nil
            if let group = session.expiry {
                group.sessions[id] = nil
                if group.sessions.isEmpty, let timer = group.timer {
                    timer.cancel()
                    group.timer = nil
                    if shard.expiries[group.closesAt] === group { shard.expiries[group.closesAt] = nil }
                }
            }
            session.shard = nil
            session.expiry = nil
        }
        metrics.closed(session, reason: reason)
    }

    /// One event loop's watched sessions; only touched on that loop.
    final class Shard {
        var sessions: [ObjectIdentifier: LiveSession] = [:]
        /// The sessions by the instant their token ends (`exp` plus leeway, Unix seconds).
        var expiries: [Int64: ExpiryGroup] = [:]
    }

    /// The sessions of one loop whose tokens end at the same instant, and their one timer; only
    /// touched on that loop.
    final class ExpiryGroup {
        let closesAt: Int64
        var sessions: [ObjectIdentifier: LiveSession] = [:]
        var timer: Scheduled<Void>?

        init(closesAt: Int64) {
            self.closesAt = closesAt
        }
    }
}
