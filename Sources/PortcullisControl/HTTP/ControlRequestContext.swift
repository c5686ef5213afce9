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

    /// The subject (`CN=ops-alice,O=…`) of the client certificate the TLS handshake verified
    /// against `admin_tls.client_ca`; nil without TLS or without a certificate.
    func verifiedClientCertificateSubject() async -> String? {
        await verifiedClientCertificate()?.subject
    }

    /// The client certificate the TLS handshake verified: its subject and SHA-256.
    func verifiedClientCertificate() async -> ClientAuthenticator.PresentedCertificate? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get(),
              let der = try? certificate.toDERBytes(),
              let parsed = try? Certificate(derEncoded: der) else { return nil }
        return ClientAuthenticator.PresentedCertificate(subject: parsed.subject.description, sha256: Array(SHA256.hash(data: der)))
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
