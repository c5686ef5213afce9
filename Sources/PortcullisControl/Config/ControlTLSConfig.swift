import Foundation
import NIOSSL
import PortcullisConfig

/// HTTPS on one control-plane listener (`tls:` for the public one, `admin_tls:` for the admin
/// API); the files are re-read on SIGHUP.
public struct ControlTLSConfig: Sendable {
    /// Whether clients present certificates, verified against `clientCA`.
    public enum ClientCertificates: String, Sendable, CaseIterable {
        /// Not asked for.
        case off = "none"
        /// Verified when presented; a connection without one is accepted.
        case optional
        /// No connection without a certificate the CA signed.
        case required
    }

    public var certificateChain: String
    public var privateKey: String
    public var clientCA: String?
    public var clientCertificates: ClientCertificates

    init(node: ConfigNode, baseDirectory: String, allowClientCertificates: Bool) throws {
        var map = try node.mapping()
        func path(_ node: ConfigNode) throws -> String {
            let text = try node.nonEmptyString()
            return text.hasPrefix("/") ? text : URL(fileURLWithPath: baseDirectory).appendingPathComponent(text).path
        }
        certificateChain = try path(map.required("certificate_chain"))
        privateKey = try path(map.required("private_key"))
        if allowClientCertificates {
            clientCA = try map.optional("client_ca").map(path)
            let modeNode = map.optional("client_certificates")
            if let modeNode {
                let text = try modeNode.string()
                guard let mode = ClientCertificates(rawValue: text) else {
                    throw modeNode.error("expected none, optional or required, not '\(text)'")
                }
                clientCertificates = mode
            } else {
                clientCertificates = clientCA == nil ? .off : .required
            }
            if clientCertificates != .off, clientCA == nil {
                throw (modeNode ?? node).error("client_certificates: \(clientCertificates.rawValue) needs client_ca")
            }
        } else {
            clientCA = nil
            clientCertificates = .off
        }
        try map.finish()
        do {
            _ = try makeContext()
        } catch {
            throw node.error("\(error)")
        }
    }

    /// Reads the files (at start and on every SIGHUP). TLS 1.2 or later.
    public func makeContext() throws -> NIOSSLContext {
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
        if let clientCA, clientCertificates != .off {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCA))
            } catch {
                throw ControlTLSError("cannot read the client CA \(clientCA): \(error)")
            }
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
