/// `keys:events`: a key-set record changed. Only a trigger — the node then reads the record,
/// whose MAC it checks — so it carries no MAC of its own. Wire text: `<version> <issuer>`.
public struct KeySetAnnouncement: Sendable, Equatable {
    public var version: String
    /// The issuer's `iss` (may contain spaces; it is the rest of the line).
    public var issuer: String

    public init(version: String, issuer: String) {
        self.version = version
        self.issuer = issuer
    }

    public var wireText: String { "\(version) \(issuer)" }

    public init?(_ bytes: [UInt8]) {
        guard let (version, issuer) = splitAtFirstSpace(bytes) else { return nil }
        self.version = version
        self.issuer = issuer
    }
}

/// `keys:refetch`: a node met an unknown kid and asks the control plane to refetch the issuer's
/// JWKS (throttled on both sides; a forged request costs at most one throttled fetch).
/// Wire text: `<kid> <issuer>`.
public struct KeyRefetchRequest: Sendable, Equatable {
    public var kid: String
    public var issuer: String

    public init(kid: String, issuer: String) {
        self.kid = kid
        self.issuer = issuer
    }

    public var wireText: String { "\(kid) \(issuer)" }

    public init?(_ bytes: [UInt8]) {
        guard let (kid, issuer) = splitAtFirstSpace(bytes) else { return nil }
        self.kid = kid
        self.issuer = issuer
    }
}

/// `<word> <rest>`: both non-empty; the rest may hold spaces (an issuer URL may).
private func splitAtFirstSpace(_ bytes: [UInt8]) -> (String, String)? {
    guard let space = bytes.firstIndex(of: 0x20), space > 0, space + 1 < bytes.count else { return nil }
    return (String(decoding: bytes[..<space], as: UTF8.self), String(decoding: bytes[(space + 1)...], as: UTF8.self))
}
