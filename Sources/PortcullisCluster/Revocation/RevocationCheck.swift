import PortcullisJOSE

/// What the cluster's revocation list says about a verified token.
public enum RevocationVerdict: Sendable, Equatable {
    case allowed
    /// Revoked; `detail` says by what (jti, subject cut-off, client, key) and is safe to show the client.
    case revoked(detail: String)
    /// The node's revocation state is older than the configured maximum staleness: fail closed (503).
    case stale(detail: String)
}

/// Checks every authenticated request — cached tokens included — against revocations.
/// Called on an event loop for every request: implementations must not block or do I/O.
public protocol RevocationCheck: Sendable {
    func check(_ token: VerifiedToken) -> RevocationVerdict

    /// Whether the list the node holds revokes `token`, however old that list is: a revocation
    /// in it is evidence whether or not the node's state is stale. Open sessions are checked
    /// this way (a revocation a stale node applied would otherwise leave them open); new
    /// requests by `check`, which fails closed when stale.
    func revokes(_ token: VerifiedToken) -> Bool
}

extension RevocationCheck {
    public func revokes(_ token: VerifiedToken) -> Bool {
        if case .revoked = check(token) { return true }
        return false
    }
}
