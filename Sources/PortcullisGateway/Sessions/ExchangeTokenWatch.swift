import NIOCore
import PortcullisJOSE

/// Whether an HTTP/1.1 connection's current exchange ends with the token (or the client
/// certificate) that admitted it, and the `LiveSession` that makes it so once the exchange turns
/// out to be long.
///
/// Opening a session registers it in the node's `LiveSessions` (under locks, see there); nearly
/// every exchange ends within one read of its upstream, and paying that on each would slow every
/// request. So a session is opened only for an exchange whose response is still open after a read
/// of the upstream (the connection asks at each flush, `openIfWatched`) or that runs past
/// `watchAfter` without one (a long poll waiting for its head, a long upload: the timer calls
/// `onLong`, which asks the same). An exchange is watched when its route closes on token end and
/// it was admitted with a token, or on the strength of the client certificate, whatever the
/// route's `on_token_end` (a reload that replaces the certificate's trust ends it).
///
/// Owned by one connection's handler and used on its event loop only.
struct ExchangeTokenWatch {
    /// How long an exchange admitted with a token runs unwatched: past it, its token's end cuts it.
    static let watchAfter = TimeAmount.seconds(1)

    /// The token the current exchange was admitted with, on a route that closes on token end.
    private var token: VerifiedToken?
    /// The current exchange was admitted on the strength of the connection's client certificate.
    private var reliesOnCertificate = false
    private var session: LiveSession?
    /// One timer per connection, re-armed per exchange by moving its deadline (`DeadlineTimer`: a
    /// scheduled check only when none is pending).
    private var timer: DeadlineTimer?

    /// Whether the current exchange ends with its token or certificate (a session may not be open yet).
    var isWatched: Bool { token != nil || reliesOnCertificate }

    /// Creates the connection's timer: `onLong` runs when an exchange has been watched for
    /// `watchAfter` without a session; it should call `openIfWatched` if the exchange still runs.
    /// The closure may hold the handler strongly: `stop()` breaks the cycle.
    mutating func start(eventLoop: any EventLoop, onLong: @escaping () -> Void) {
        timer = DeadlineTimer(eventLoop: eventLoop, onExpire: onLong)
    }

    /// A new exchange, admitted at `start` with `token` (nil on a route that lets sessions outlive
    /// their token) or on the client certificate.
    mutating func exchangeAdmitted(token: VerifiedToken?, reliesOnCertificate: Bool, at start: NIODeadline) {
        self.token = token
        self.reliesOnCertificate = reliesOnCertificate
        if isWatched { timer?.set(start + Self.watchAfter) }
    }

    /// Opens the current exchange's session, if it is watched and has none yet. `onEnd` runs (on
    /// `eventLoop`, at most once) when its token ends or its certificate's trust is replaced; the
    /// session then counts as ended. `client` is the connection's, whose certificate is watched
    /// when the exchange relies on it.
    mutating func openIfWatched(in sessions: LiveSessions, client: HeaderRewriter.ClientInfo, eventLoop: any EventLoop,
                                onEnd: @escaping (LiveSessions.TokenEnd) -> Void) {
        guard session == nil, isWatched else { return }
        session = sessions.open(protocol: .http1, token: token, policy: .close, certificate: reliesOnCertificate ? client : nil,
                                eventLoop: eventLoop, onTokenEnd: onEnd)
    }

    /// The exchange ended otherwise than by its token (`reason`: the client or the upstream): its
    /// session, if one is open, ends with it, and the next exchange starts unwatched.
    mutating func exchangeEnded(_ reason: LiveSessions.EndReason) {
        forget()
        session?.end(reason)
        session = nil
    }

    /// The session's `onEnd` ran: the session has ended already; only this watch forgets it.
    mutating func tokenEnded() {
        forget()
        session = nil
    }

    /// The connection's handler is going: ends the session as the client's and stops the timer.
    mutating func stop() {
        exchangeEnded(.client)
        timer?.stop()
        timer = nil
    }

    private mutating func forget() {
        token = nil
        reliesOnCertificate = false
        timer?.cancel()
    }
}
