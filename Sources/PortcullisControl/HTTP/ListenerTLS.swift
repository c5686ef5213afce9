import NIOSSL

/// What a listener's new connections get: its TLS context and, on a public listener with
/// `self_signed_tls_client_auth` clients, the verifier that replaces the handshake's own
/// verification of client certificates.
struct ListenerTLS: Sendable {
    var context: NIOSSLContext
    var clientVerifier: ClientCertificateVerifier?
    /// A digest of what decides which client certificates pass: the mode, `client_ca`'s
    /// certificates and the registered self-signed ones. A reload that changes it quiesces the
    /// listener's open connections (`ListenerTLSBox`).
    var clientTrust: [UInt8]

    /// The TLS handler of one new connection.
    func makeHandler() -> NIOSSLServerHandler {
        guard let verifier = clientVerifier else { return NIOSSLServerHandler(context: context) }
        return NIOSSLServerHandler(context: context, customVerificationCallbackWithMetadata: { presented, promise in
            promise.completeWithTask { await verifier.verify(presented) }
        })
    }
}
