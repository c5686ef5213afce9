import PortcullisConfig

/// One bearer credential for the admin API (`admin_tokens:`). Only the SHA-256 of the token is
/// configured, so the config file does not hold a usable secret.
public struct AdminCredential: Sendable, Equatable {
    /// Who the credential belongs to: the "who" of every audit entry.
    public var name: String
    /// SHA-256 of the token.
    public var digest: [UInt8]

    public init(name: String, digest: [UInt8]) {
        self.name = name
        self.digest = digest
    }

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        name = try map.required("name").nonEmptyString()
        let hashNode = try map.required("sha256")
        guard let digest = Hex.decode(try hashNode.string()), digest.count == 32 else {
            throw hashNode.error("expected the SHA-256 of the token as 64 hex digits (`printf %s \"$TOKEN\" | sha256sum`)")
        }
        self.digest = digest
        try map.finish()
    }

    /// Reads `admin_tokens:`: at least one, with unique names and hashes.
    static func list(from node: ConfigNode, allowEmpty: Bool = false) throws -> [AdminCredential] {
        var result: [AdminCredential] = []
        for item in try node.sequence() {
            let credential = try AdminCredential(node: item)
            if result.contains(where: { $0.name == credential.name }) { throw item.error("duplicate admin token name '\(credential.name)'") }
            if result.contains(where: { $0.digest == credential.digest }) { throw item.error("two admin tokens with the same hash") }
            result.append(credential)
        }
        guard !result.isEmpty || allowEmpty else { throw node.error("list at least one admin token: the admin API refuses every call without one") }
        return result
    }
}

/// What an admin call must present (`admin_auth:`). Certificates are those `admin_tls.client_ca`
/// signed; use a CA that signs admin certificates only, since every certificate it signed is
/// admitted.
public enum AdminAuthMode: String, Sendable, CaseIterable {
    /// A bearer token from `admin_tokens` (the default).
    case token
    /// A client certificate; bearer tokens are not accepted.
    case certificate
    /// Both: the token names the credential, the certificate must come with it.
    case tokenAndCertificate = "token_and_certificate"
    /// Either.
    case tokenOrCertificate = "token_or_certificate"

    var acceptsCertificates: Bool { self != .token }
}
