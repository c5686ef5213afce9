/// Which client certificates the public listener trusts: the roots of `tls.client_ca` (their DER)
/// and whether a certificate is required. A reload compares the old trust with the new one
/// (`narrows`): only a change that may refuse a connection the old trust admitted reaches open
/// connections (`ListenerSetup`).
struct ClientTrust: Sendable, Equatable {
    /// The DER of each certificate in `tls.client_ca`.
    let roots: Set<[UInt8]>
    /// `client_certificates: required`: the handshake admits no connection without one.
    let required: Bool

    /// Whether going from `old` to `new` (nil: no certificates asked for) may refuse what `old`
    /// admitted: a root removed (a certificate it verified may no longer be trusted: the
    /// operator cutting a CA off), certificates no longer asked for at all, or one now required
    /// where it was not. Adding a root (a CA rollover whose bundle keeps the old CA) or making a
    /// certificate optional narrows nothing: the connections the old trust admitted stay.
    static func narrows(from old: ClientTrust?, to new: ClientTrust?) -> Bool {
        switch (old, new) {
        case (nil, nil): false
        case (nil, let new?): new.required
        case (.some, nil): true
        case (let old?, let new?): !old.roots.isSubset(of: new.roots) || (new.required && !old.required)
        }
    }
}
