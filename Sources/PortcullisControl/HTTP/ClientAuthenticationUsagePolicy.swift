import SwiftASN1
import X509

/// The extended key usage check of the handshake's own client-certificate verification (OpenSSL's
/// and BoringSSL's `ssl_client` purpose): a certificate of the chain that lists extended key
/// usages must list `clientAuth` or `anyExtendedKeyUsage`.
struct ClientAuthenticationUsagePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.extendedKeyUsage]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        for certificate in chain {
            let usage: ExtendedKeyUsage?
            do {
                usage = try certificate.extensions.extendedKeyUsage
            } catch {
                return .failsToMeetPolicy(reason: "unreadable extended key usage in \(certificate.subject): \(error)")
            }
            guard let usage else { continue }
            guard usage.contains(.clientAuth) || usage.contains(.any) else {
                return .failsToMeetPolicy(reason: "\(certificate.subject) is not for client authentication (extended key usage \(usage))")
            }
        }
        return .meetsPolicy
    }
}
