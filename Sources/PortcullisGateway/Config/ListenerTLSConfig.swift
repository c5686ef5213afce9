import PortcullisConfig

/// Certificate and key for the public listener, and optionally the CA its clients' certificates
/// are verified against; re-read on SIGHUP.
public struct ListenerTLSConfig: Sendable {
    /// Whether clients are asked for certificates (verified against `clientCA`).
    public typealias ClientCertificates = ClientCertificateMode

    public var certificateChain: String
    public var privateKey: String
    public var clientCA: String?
    public var clientCertificates: ClientCertificates

    init(node: ConfigNode, baseDirectory: String) throws {
        var map = try node.mapping()
        certificateChain = resolve(try map.required("certificate_chain").nonEmptyString(), against: baseDirectory)
        privateKey = resolve(try map.required("private_key").nonEmptyString(), against: baseDirectory)
        clientCA = try map.optional("client_ca").map { resolve(try $0.nonEmptyString(), against: baseDirectory) }
        let modeNode = map.optional("client_certificates")
        clientCertificates = try modeNode?.choice(ClientCertificates.self) ?? (clientCA == nil ? .off : .optional)
        if clientCertificates != .off, clientCA == nil {
            throw (modeNode ?? node).error("client_certificates: \(clientCertificates.rawValue) needs client_ca")
        }
        try map.finish()
    }
}
