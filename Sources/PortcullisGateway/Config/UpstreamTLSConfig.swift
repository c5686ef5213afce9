import PortcullisConfig

/// TLS from the gateway to an upstream.
public struct UpstreamTLSConfig: Sendable {
    /// PEM bundle of trusted roots; nil uses the system's.
    public var caFile: String?
    /// SNI and the name checked in the certificate; nil uses the target's host.
    public var serverName: String?
    /// Verify the upstream's certificate (default true). Turning it off is for tests only.
    public var verify = true

    init(node: ConfigNode, baseDirectory: String) throws {
        if node.isScalar {
            guard try node.bool() else { throw node.error("use `tls: true` or a mapping; omit the key to disable TLS") }
            return
        }
        var map = try node.mapping()
        caFile = try map.optional("ca_file").map { resolve(try $0.nonEmptyString(), against: baseDirectory) }
        serverName = try map.optional("server_name")?.nonEmptyString()
        if let v = map.optional("verify") { verify = try v.bool() }
        try map.finish()
    }
}
