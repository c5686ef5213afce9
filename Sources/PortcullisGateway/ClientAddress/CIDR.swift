/// An IP network, `address/prefix` (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a network
/// of one (`/32`, `/128`). IPv4 networks match IPv4 addresses (also when they arrive IPv4-mapped)
/// and IPv6 networks IPv6 ones.
struct CIDR: Hashable, Sendable, CustomStringConvertible {
    let network: IPAddress
    let prefix: Int

    /// Why `text` is not a network, for config errors.
    enum ParseError: Error, Equatable, CustomStringConvertible {
        case notAnAddress, badPrefix, hostBitsSet(suggestion: String)

        var description: String {
            switch self {
            case .notAnAddress: "is not an IP address or address/prefix"
            case .badPrefix: "has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)"
            case .hostBitsSet(let suggestion): "has bits set beyond its prefix; did you mean \(suggestion)?"
            }
        }
    }

    /// Parses `text`. Bits beyond the prefix must be zero: `10.0.0.1/8` is more likely a typo
    /// than a wish to trust all of `10.0.0.0/8`.
    static func parse(_ text: String) -> Result<CIDR, ParseError> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return .failure(.notAnAddress) }
        // A mapped `::ffff:a.b.c.d` became IPv4; its prefix must then be given as IPv4's.
        let width = address.bytes.count * 8
        var prefix = width
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].count <= 3, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int(parts[1]), value <= width else { return .failure(.badPrefix) }
            prefix = value
        }
        let masked = Self.mask(address, prefix: prefix)
        guard masked == address else { return .failure(.hostBitsSet(suggestion: "\(masked)/\(prefix)")) }
        return .success(CIDR(network: address, prefix: prefix))
    }

    private init(network: IPAddress, prefix: Int) {
        self.network = network
        self.prefix = prefix
    }

    func contains(_ address: IPAddress) -> Bool {
        address.bytes.count == network.bytes.count && Self.mask(address, prefix: prefix) == network
    }

    static func mask(_ address: IPAddress, prefix: Int) -> IPAddress {
        var bytes = address.bytes
        for index in bytes.indices {
            let keep = min(8, max(0, prefix - index * 8))
            bytes[index] &= keep == 8 ? 0xFF : ~(0xFF >> UInt8(keep))
        }
        return IPAddress(bytes: bytes)
    }

    var description: String { "\(network)/\(prefix)" }
}
