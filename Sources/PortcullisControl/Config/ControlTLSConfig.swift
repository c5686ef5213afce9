import Crypto
import Foundation
import NIOSSL
import PortcullisConfig

/// HTTPS on one control-plane listener (`tls:` for the public one, `admin_tls:` for the admin
/// API); the files are re-read on SIGHUP.
public struct ControlTLSConfig: Sendable {
    /// Whether clients are asked for certificates (verified against `clientCA`).
    public typealias ClientCertificates = ClientCertificateMode

    public var certificateChain: String
    public var privateKey: String
    public var clientCA: String?
    public var clientCertificates: ClientCertificates
    /// SHA-256 digests of the certificates registered for `self_signed_tls_client_auth` (the
    /// public listener of a control plane whose authorization server has such clients; empty
    /// elsewhere). With any, the listener asks for client certificates even without `client_ca`
    /// and verifies them itself (`ClientCertificateVerifier`) instead of in the handshake.
    public var selfSignedClientCertificates: Set<[UInt8]>

    /// Whether the listener's certificates are verified by `ClientCertificateVerifier` rather than
    /// by the TLS library; then only a certificate reported with a validated chain chains to
    /// `client_ca`.
    var verifiesClientCertificatesItself: Bool {
        !selfSignedClientCertificates.isEmpty && clientCertificates != .off
    }

    init(node: ConfigNode, baseDirectory: String, allowClientCertificates: Bool, selfSignedClientCertificates: Set<[UInt8]> = []) throws {
        var map = try node.mapping()
        func path(_ node: ConfigNode) throws -> String {
            let text = try node.nonEmptyString()
            return text.hasPrefix("/") ? text : URL(fileURLWithPath: baseDirectory).appendingPathComponent(text).path
        }
        certificateChain = try path(map.required("certificate_chain"))
        privateKey = try path(map.required("private_key"))
        if allowClientCertificates {
            self.selfSignedClientCertificates = selfSignedClientCertificates
            clientCA = try map.optional("client_ca").map(path)
            let modeNode = map.optional("client_certificates")
            if let modeNode {
                let text = try modeNode.string()
                guard let mode = ClientCertificates(rawValue: text) else {
                    throw modeNode.error("expected none, optional or required, not '\(text)'")
                }
                if mode == .off, !selfSignedClientCertificates.isEmpty {
                    throw modeNode.error("self_signed_tls_client_auth clients present their certificates here: use optional or required")
                }
                clientCertificates = mode
            } else if clientCA != nil {
                clientCertificates = .required
            } else {
                clientCertificates = selfSignedClientCertificates.isEmpty ? .off : .optional
            }
            if clientCertificates != .off, clientCA == nil, selfSignedClientCertificates.isEmpty {
                throw (modeNode ?? node).error("client_certificates: \(clientCertificates.rawValue) needs client_ca")
            }
        } else {
            self.selfSignedClientCertificates = []
            clientCA = nil
            clientCertificates = .off
        }
        try map.finish()
        do {
            _ = try makeListenerTLS()
        } catch {
            throw node.error("\(error)")
        }
    }

    /// What new connections get (at start and on every SIGHUP): the context and, when the
    /// listener verifies client certificates itself, the verifier with `client_ca` read anew.
    func makeListenerTLS() throws -> ListenerTLS {
        // Read once: the context, the verifier and the trust digest must agree on one file's content.
        var roots: [NIOSSLCertificate] = []
        if let clientCA, clientCertificates != .off {
            do {
                roots = try NIOSSLCertificate.fromPEMFile(clientCA)
            } catch {
                throw ControlTLSError("cannot read the client CA \(clientCA): \(error)")
            }
        }
        let context = try makeContext(clientRoots: roots)
        var trust = SHA256()
        trust.update(data: Array(clientCertificates.rawValue.utf8))
        for root in roots {
            let der = (try? root.toDERBytes()) ?? []
            trust.update(data: Array(String(der.count).utf8) + der)
        }
        for registered in selfSignedClientCertificates.sorted(by: { $0.lexicographicallyPrecedes($1) }) { trust.update(data: registered) }
        let clientTrust = Array(trust.finalize())
        guard verifiesClientCertificatesItself else { return ListenerTLS(context: context, clientVerifier: nil, clientTrust: clientTrust) }
        do {
            let verifier = try ClientCertificateVerifier(roots: roots, registered: selfSignedClientCertificates,
                                                         required: clientCertificates == .required)
            return ListenerTLS(context: context, clientVerifier: verifier, clientTrust: clientTrust)
        } catch {
            throw ControlTLSError("cannot parse the client CA \(clientCA ?? "-"): \(error)")
        }
    }

    /// Reads the certificate files (at start and on every SIGHUP); clients are verified against
    /// `clientRoots`, read from `client_ca`. TLS 1.2 or later.
    func makeContext(clientRoots: [NIOSSLCertificate]) throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateChain)
        } catch {
            throw ControlTLSError("cannot read the certificate chain \(certificateChain): \(error)")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        } catch {
            throw ControlTLSError("cannot read the private key \(privateKey): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if clientCertificates != .off {
            // Without client_ca (self-signed clients only) the verifier decides alone.
            if clientCA != nil { configuration.trustRoots = .certificates(clientRoots) }
            configuration.certificateVerification = clientCertificates == .required ? .noHostnameVerification : .optionalVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ControlTLSError("cannot set up TLS with \(certificateChain) and \(privateKey): \(error)")
        }
    }
}

/// A TLS file problem, with the file named.
public struct ControlTLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
