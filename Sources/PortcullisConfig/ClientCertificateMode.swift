/// Whether a TLS listener asks its clients for certificates (`client_certificates:` in the
/// gateway's and the control plane's `tls:` sections), verified against the listener's CA.
public enum ClientCertificateMode: String, Sendable, CaseIterable {
    /// Not asked for.
    case off = "none"
    /// Verified when presented; a connection without one is accepted (what needs one decides:
    /// a gateway route, a bound token, an admin credential).
    case optional
    /// No connection without a certificate the CA signed.
    case required
}
