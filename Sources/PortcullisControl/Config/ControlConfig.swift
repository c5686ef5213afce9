import Foundation
import PortcullisCluster
import PortcullisConfig
import PortcullisJOSE

/// The control plane's configuration file (see docs/configuration.md, "Control plane").
public struct ControlConfig: Sendable {
    /// The file it was read from.
    public var file: String
    public var nodeID: String
    /// Public listener: the authorization server's endpoints and `/healthz`.
    public var listen: HostPort
    /// Admin listener: `/v1/...` and `/metrics`. Loopback by default.
    public var adminListen: HostPort
    public var cluster: ClusterConfig
    public var adminCredentials: [AdminCredential]
    /// External issuers whose key sets this control plane fetches and publishes to the cluster.
    public var issuers: [IssuerConfig]
    /// Rate-limit policies the gateways enforce, described by `/v1/ratelimits`.
    public var rateLimitPolicies: [RateLimitPolicy]
    public var authorizationServer: AuthorizationServerConfig?
    /// Upper bound of a revocation `wait`.
    public var maxWait: Duration
    /// HTTPS on the public listener (`tls:`).
    public var tls: ControlTLSConfig?
    /// HTTPS on the admin listener, optionally with client certificates (`admin_tls:`).
    public var adminTLS: ControlTLSConfig?
    /// What an admin call must present (`admin_auth:`).
    public var adminAuth: AdminAuthMode
    /// Each listener's bounds (`limits`): a keep-alive connection without a request for
    /// `idleTimeout` is closed, and connections past `maxConnections` are closed as they come.
    public var idleTimeout: Duration
    public var maxConnections: Int
    /// The settings a reload cannot change, as written in `file` (docs/configuration.md).
    public let startOnly: StartOnlySettings

    /// Read only at start: the listeners (and whether they speak TLS), the cluster link, the
    /// issuers the key-set chores fetch, and the authorization server.
    static let startOnlyKeys: [StartOnlySettings.Key] = [
        .value("node_id"), .value("listen"), .value("admin_listen"), .value("cluster"), .value("issuers"),
        .value("authorization_server"), .presence("tls"), .presence("admin_tls"), .value("limits"),
    ]

    /// Reads and validates `file`; every error names the file, line and key.
    public static func load(file: String) throws -> ControlConfig {
        let root = try ConfigNode.load(file: file)
        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
        return try ControlConfig(node: root, file: file, baseDirectory: base)
    }

    init(node: ConfigNode, file: String, baseDirectory: String) throws {
        self.file = file
        startOnly = StartOnlySettings(root: node, keys: Self.startOnlyKeys)
        var map = try node.mapping()
        if let node = map.optional("node_id"), let problem = NodeID.problem(try node.nonEmptyString()) { throw node.error(problem) }
        nodeID = try map.optional("node_id")?.nonEmptyString() ?? "control-" + (ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "1")
        listen = try map.optional("listen").map(HostPort.init(node:)) ?? HostPort(host: "127.0.0.1", port: 9000)
        adminListen = try map.optional("admin_listen").map(HostPort.init(node:)) ?? HostPort(host: "127.0.0.1", port: 9001)
        cluster = try ClusterConfig(node: map.required("cluster"), baseDirectory: baseDirectory)
        // The authorization server first: its self-signed clients change what the public listener asks for.
        let tlsNode = map.optional("tls")
        authorizationServer = try map.optional("authorization_server").map {
            try AuthorizationServerConfig(node: $0, baseDirectory: baseDirectory, publicTLS: tlsNode != nil)
        }
        let selfSigned = authorizationServer?.selfSignedCertificates ?? []
        tls = try tlsNode.map {
            try ControlTLSConfig(node: $0, baseDirectory: baseDirectory, allowClientCertificates: true, selfSignedClientCertificates: selfSigned)
        }
        adminTLS = try map.optional("admin_tls").map { try ControlTLSConfig(node: $0, baseDirectory: baseDirectory, allowClientCertificates: true) }
        let authNode = map.optional("admin_auth")
        if let authNode {
            let text = try authNode.string()
            guard let mode = AdminAuthMode(rawValue: text) else {
                throw authNode.error("expected one of \(AdminAuthMode.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
            }
            adminAuth = mode
        } else {
            adminAuth = .token
        }
        if adminAuth.acceptsCertificates, (adminTLS?.clientCertificates ?? .off) == .off {
            throw (authNode ?? node).error("admin_auth: \(adminAuth.rawValue) needs admin_tls with client_ca")
        }
        if adminAuth == .certificate {
            adminCredentials = try map.optional("admin_tokens").map { try AdminCredential.list(from: $0, allowEmpty: true) } ?? []
        } else {
            adminCredentials = try AdminCredential.list(from: map.required("admin_tokens"))
        }

        var issuers: [IssuerConfig] = []
        if let issuersNode = map.optional("issuers") {
            let parsed = try IssuerConfig.list(from: issuersNode, baseDirectory: baseDirectory)
            let items = try issuersNode.sequence()
            for (issuer, item) in zip(parsed, items) {
                if let builtin = authorizationServer, issuer.issuer == builtin.issuer {
                    throw item.error("issuer '\(issuer.issuer)' is the built-in authorization server, which publishes its own keys: leave it out of issuers:")
                }
                if issuer.keySource == .none {
                    throw item.error("the control plane fetches and publishes issuers' key sets: give jwks_uri, discovery_url or jwks_file")
                }
                if issuer.name == authorizationServer?.name {
                    throw item.error("issuer name '\(issuer.name)' is taken by the built-in authorization server")
                }
                issuers.append(issuer)
            }
        }
        self.issuers = issuers

        var policies: [RateLimitPolicy] = []
        for item in try map.optional("rate_limits")?.sequence() ?? [] {
            let policy = try RateLimitPolicy(node: item)
            guard !policies.contains(where: { $0.name == policy.name }) else { throw item.error("duplicate rate-limit policy name '\(policy.name)'") }
            policies.append(policy)
        }
        rateLimitPolicies = policies
        var limits = try map.optional("limits")?.mapping()
        if let node = limits?.optional("idle_timeout") {
            idleTimeout = try node.duration()
            guard idleTimeout >= .seconds(1), idleTimeout <= .seconds(3600) else { throw node.error("must be between 1s and 1h") }
        } else {
            idleTimeout = .seconds(60)
        }
        maxConnections = try limits?.optional("max_connections")?.int(in: 1...1_000_000) ?? 4096
        try limits?.finish()
        if let waitNode = map.optional("max_wait") {
            maxWait = try waitNode.duration()
            guard maxWait <= .seconds(300) else { throw waitNode.error("must be at most 5m") }
        } else {
            maxWait = .seconds(30)
        }
        try map.finish()
    }

    /// The files holding this node's secrets, for the warning about their modes (`SecretFile`).
    public var secretFiles: [SecretFile] {
        var files = cluster.secretFiles
        if let tls { files.append(SecretFile(key: "tls.private_key", path: tls.privateKey)) }
        if let adminTLS { files.append(SecretFile(key: "admin_tls.private_key", path: adminTLS.privateKey)) }
        if let authorizationServer {
            files.append(SecretFile(key: "authorization_server.key_encryption_key_file", path: authorizationServer.keyEncryptionKeyFile))
        }
        return files
    }
}
