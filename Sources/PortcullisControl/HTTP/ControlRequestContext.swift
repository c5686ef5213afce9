import Hummingbird
import NIOCore

/// The request context of both listeners: the peer address (audit "from where") and, on the
/// admin listener, the credential that authenticated the call.
struct ControlRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    /// Set by `AdminAuthMiddleware`.
    var credential: AdminCredential?

    init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// The audit "who".
    var actor: String { credential?.name ?? "-" }

    /// The audit "from where": `ip:port` of the peer.
    var peer: String {
        guard let remoteAddress else { return "-" }
        if let ip = remoteAddress.ipAddress, let port = remoteAddress.port {
            return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return "\(remoteAddress)"
    }
}
