import NIOSSL

/// The public listener's TLS for new connections: the context, and which client certificates it
/// trusts, which a reload compares (`ListenerSetup`).
struct ListenerTLS: Sendable {
    let context: NIOSSLContext
    /// Nil when the listener asks for no client certificates.
    let clientTrust: ClientTrust?

    /// Builds the setup from `config` (nil without `tls`). `client_ca` is read once, so that the
    /// context and the trust compared agree on one content of the file. `offerHTTP2`: ALPN offers `h2`
    /// before `http/1.1`.
    static func make(_ config: ListenerTLSConfig?, offerHTTP2: Bool) throws -> ListenerTLS? {
        guard let config else { return nil }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(config.certificateChain).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: config.privateKey, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            configuration.applicationProtocols = offerHTTP2 ? ["h2", "http/1.1"] : ["http/1.1"]
            var clientTrust: ClientTrust?
            if let clientCA = config.clientCA, config.clientCertificates != .off {
                let roots = try NIOSSLCertificate.fromPEMFile(clientCA)
                configuration.trustRoots = .certificates(roots)
                configuration.certificateVerification = config.clientCertificates == .required ? .noHostnameVerification : .optionalVerification
                clientTrust = ClientTrust(roots: Set(try roots.map { try $0.toDERBytes() }), required: config.clientCertificates == .required)
            }
            return ListenerTLS(context: try NIOSSLContext(configuration: configuration), clientTrust: clientTrust)
        } catch {
            throw GatewayError.tls("cannot load \(config.certificateChain) / \(config.privateKey)\(config.clientCA.map { " / \($0)" } ?? ""): \(error)")
        }
    }
}
