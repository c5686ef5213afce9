import Crypto
import NIOCore
import NIOSSL
import X509

/// Verifies client certificates on the public listener when `self_signed_tls_client_auth` clients
/// are configured, in place of the handshake's own verification (which refuses any certificate
/// that does not chain to `client_ca`, and so every self-signed one).
///
/// - A certificate that chains to `client_ca` (RFC 5280 path validation by swift-certificates,
///   plus the `clientAuth` extended key usage the handshake's own verification requires) is
///   accepted with its validated chain: NIOSSL then reports it as
///   `peerValidatedCertificateChain`, and only such a certificate counts for `tls_client_auth`.
/// - Any other certificate is accepted with no validated chain: it can only match a registered
///   self-signed certificate by its SHA-256. With `client_certificates: required` it must be one
///   of them, or the handshake fails.
///
/// Either way the TLS handshake has checked the client's signature with the certificate's key
/// (CertificateVerify): a certificate is never accepted from someone who does not hold its key.
struct ClientCertificateVerifier: Sendable {
    /// `client_ca`, parsed for path validation, and the same certificates as NIOSSL objects, to
    /// report the validated chain.
    private let roots: [Certificate]
    private let rootsForNIO: [Certificate: NIOSSLCertificate]
    /// SHA-256 of every certificate registered for `self_signed_tls_client_auth`.
    private let registered: Set<[UInt8]>
    private let required: Bool

    init(roots: [NIOSSLCertificate], registered: Set<[UInt8]>, required: Bool) throws {
        var parsed: [Certificate] = []
        var lookup: [Certificate: NIOSSLCertificate] = [:]
        for root in roots {
            let certificate = try Certificate(derEncoded: try root.toDERBytes())
            parsed.append(certificate)
            lookup[certificate] = root
        }
        self.roots = parsed
        self.rootsForNIO = lookup
        self.registered = registered
        self.required = required
    }

    /// The verdict on the chain a client presented (leaf first), for
    /// `NIOSSLServerHandler(context:customVerificationCallbackWithMetadata:)`.
    func verify(_ presented: [NIOSSLCertificate]) async -> NIOSSLVerificationResultWithMetadata {
        guard let leafForNIO = presented.first, let leafDER = try? leafForNIO.toDERBytes() else { return .failed }
        if let chain = await validatedChain(presented) {
            return .certificateVerified(VerificationMetadata(NIOSSL.ValidatedCertificateChain(chain)))
        }
        if required, !registered.contains(Array(SHA256.hash(data: leafDER))) { return .failed }
        return .certificateVerified(VerificationMetadata(nil))
    }

    /// The path from the leaf to a `client_ca` certificate, or nil when there is none.
    private func validatedChain(_ presented: [NIOSSLCertificate]) async -> [NIOSSLCertificate]? {
        guard !roots.isEmpty else { return nil }
        var parsed: [Certificate: NIOSSLCertificate] = rootsForNIO
        var certificates: [Certificate] = []
        for certificate in presented {
            guard let der = try? certificate.toDERBytes(), let decoded = try? Certificate(derEncoded: der) else { return nil }
            certificates.append(decoded)
            parsed[decoded] = certificate
        }
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy()
            ClientAuthenticationUsagePolicy()
        }
        let result = await verifier.validate(leaf: certificates[0], intermediates: CertificateStore(certificates.dropFirst()))
        guard case .validCertificate(let chain) = result else { return nil }
        let mapped = chain.compactMap { parsed[$0] }
        return mapped.count == chain.count ? mapped : nil
    }
}
