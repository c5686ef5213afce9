import NIOCore
import PortcullisJOSE
import Prometheus

/// One long-lived connection or stream in `LiveSessions`. Confined to its event loop.
final class LiveSession {
    private let owner: LiveSessions
    let protocolName: SessionProtocol
    /// The token watched for its end; nil when the route allows the session to outlive it.
    let token: VerifiedToken?
    /// The connection whose client certificate admitted it, when one did
    /// (`Admission.Admitted.reliesOnClientCertificate`).
    let certificate: HeaderRewriter.ClientInfo?
    let eventLoop: any EventLoop
    private var onTokenEnd: ((LiveSessions.TokenEnd) -> Void)?
    /// Its protocol's `portcullis_sessions_open` gauge, taken down when it ends.
    let openGauge: Gauge
    /// Where its loop keeps it while its token is watched, and the sessions whose tokens end at
    /// the same instant, which share one timer; nil when not watched.
    var shard: LiveSessions.Shard?
    var expiry: LiveSessions.ExpiryGroup?
    /// How it ended; nil while open.
    private(set) var endReason: LiveSessions.EndReason?

    init(owner: LiveSessions, protocol name: SessionProtocol, token: VerifiedToken?, certificate: HeaderRewriter.ClientInfo?,
         eventLoop: any EventLoop, openGauge: Gauge, onTokenEnd: @escaping (LiveSessions.TokenEnd) -> Void) {
        self.owner = owner
        self.protocolName = name
        self.token = token
        self.certificate = certificate
        self.eventLoop = eventLoop
        self.openGauge = openGauge
        self.onTokenEnd = onTokenEnd
    }

    /// The session ended for `reason`; the first reason given counts, later calls do nothing.
    func end(_ reason: LiveSessions.EndReason) {
        eventLoop.preconditionInEventLoop()
        guard endReason == nil else { return }
        endReason = reason
        onTokenEnd = nil
        owner.ended(self, reason: reason)
    }

    /// Ends the session for its token (or its certificate's trust) and runs the close callback;
    /// false when it had ended already.
    @discardableResult
    func tokenEnded(_ end: LiveSessions.TokenEnd) -> Bool {
        guard endReason == nil, let callback = onTokenEnd else { return false }
        self.end(end.reason)
        callback(end)
        return true
    }
}
