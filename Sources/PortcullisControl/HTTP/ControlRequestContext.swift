import Hummingbird
import NIOCore
import NIOSSL
import X509
import Crypto

/// The request context of both listeners: the peer address (audit "from where") and, on the
/// admin listener, the credential that authenticated the call.
struct ControlRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    private let channel: any Channel
    /// Set by `AdminMiddleware`.
    var credential: AdminCredential?
    /// The subject of the verified client certificate the call came with, set by `AdminMiddleware`.
    var certificateSubject: String?

    init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// The audit "who": the token's name, the certificate's subject, or both.
    var actor: String {
        switch (credential?.name, certificateSubject) {
        case (let name?, let subject?): "\(name) (\(subject))"
        case (let name?, nil): name
        case (nil, let subject?): subject
        case (nil, nil): "-"
        }
    }

    /// How a listener verifies client certificates.
    enum CertificateVerification: Sendable {
        /// In the TLS handshake, against `client_ca`: every certificate that got through chains to it.
        case byHandshake
        /// By `ClientCertificateVerifier` (a public listener with self-signed clients): only a
        /// certificate it reported with a validated chain chains to `client_ca`; any other was let
        /// through only as a candidate for `self_signed_tls_client_auth`.
        case byVerifier
    }

    /// The subject (`CN=ops-alice,O=…`) of the client certificate the TLS handshake verified
    /// against `admin_tls.client_ca`; nil without TLS or without a certificate.
    func verifiedClientCertificateSubject() async -> String? {
        await clientCertificate(verifiedBy: .byHandshake)?.subject
    }

    /// The client certificate of the connection: its subject, SHA-256, and whether it chains to
    /// the listener's `client_ca`. The handshake has proved the client holds its key. None once
    /// a reload has replaced the trust the connection was opened under (`ConnectionTrust`).
    func clientCertificate(verifiedBy verification: CertificateVerification) async -> ClientAuthenticator.PresentedCertificate? {
        // Every TLS connection carries one (added with its TLS handler): without it, none counts.
        guard let trust = try? await channel.pipeline.handler(type: ConnectionTrust.self).get(), trust.isCurrent else { return nil }
        guard let certificate = try? await channel.nioSSL_peerCertificate().get(),
              let der = try? certificate.toDERBytes(),
              let parsed = try? Certificate(derEncoded: der) else { return nil }
        let chainVerified: Bool
        switch verification {
        case .byHandshake:
            chainVerified = true
        case .byVerifier:
            let chain = (try? await channel.nioSSL_peerValidatedCertificateChain().get()) ?? nil
            chainVerified = chain?.first == certificate
        }
        return ClientAuthenticator.PresentedCertificate(subject: parsed.subject.description, sha256: Array(SHA256.hash(data: der)),
                                                        chainVerified: chainVerified)
    }

    /// Whether the request came over TLS.
    var isTLS: Bool {
        get async { (try? await channel.pipeline.handler(type: NIOSSLServerHandler.self).get()) != nil }
    }

    /// The audit "from where": `ip:port` of the peer.
    var peer: String {
        guard let remoteAddress else { return "-" }
        if let ip = remoteAddress.ipAddress, let port = remoteAddress.port {
            return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return "\(remoteAddress)"
    }
}
