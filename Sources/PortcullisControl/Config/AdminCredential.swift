import Crypto
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
    static func list(from node: ConfigNode) throws -> [AdminCredential] {
        var result: [AdminCredential] = []
        for item in try node.sequence() {
            let credential = try AdminCredential(node: item)
            if result.contains(where: { $0.name == credential.name }) { throw item.error("duplicate admin token name '\(credential.name)'") }
            if result.contains(where: { $0.digest == credential.digest }) { throw item.error("two admin tokens with the same hash") }
            result.append(credential)
        }
        guard !result.isEmpty else { throw node.error("list at least one admin token: the admin API refuses every call without one") }
        return result
    }
}

/// Lower-case hex, for configured hashes and token fingerprints.
enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Lower-case hex SHA-256 of `text`.
    static func sha256(_ text: String) -> String {
        encode(SHA256.hash(data: Array(text.utf8)))
    }
}
