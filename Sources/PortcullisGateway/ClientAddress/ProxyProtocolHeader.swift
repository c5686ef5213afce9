/// The PROXY protocol header (HAProxy's specification, versions 1 and 2) a load balancer sends
/// first on a connection to say whom it accepted that connection from. Hand-written: SwiftNIO
/// has no PROXY protocol support. Strict: anything that is not a complete, valid header is
/// refused, and nothing before the header is read as HTTP or TLS.
///
/// A pure function of the bytes received so far (`parse`), fed by `ProxyProtocolHandler` and
/// fuzzed by the `proxy-protocol` target (docs/fuzzing.md).
package enum ProxyProtocolHeader {
    /// What a header says.
    package struct Header: Equatable, Sendable {
        /// The client's address and port, nil when the header names none: a v2 `LOCAL`
        /// connection (the proxy's own, e.g. a health check), v1 `UNKNOWN`, or an address family
        /// other than TCP/UDP over IPv4/IPv6. The TCP peer is then the client.
        package var source: (address: String, port: UInt16)?
        package var destination: (address: String, port: UInt16)?
        /// The header's length in bytes; the connection's own bytes follow it.
        package var length: Int

        package static func == (lhs: Header, rhs: Header) -> Bool {
            lhs.source?.address == rhs.source?.address && lhs.source?.port == rhs.source?.port
                && lhs.destination?.address == rhs.destination?.address && lhs.destination?.port == rhs.destination?.port
                && lhs.length == rhs.length
        }
    }

    package enum Outcome: Equatable, Sendable {
        /// The bytes so far are a valid beginning of a header.
        case incomplete
        case header(Header)
        /// Not a valid header (the reason, for logs and tests).
        case invalid(String)
    }

    /// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
    package static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix = Array("PROXY ".utf8)
    /// A v1 line is at most 107 bytes, CRLF included.
    package static let v1MaxLength = 107

    /// The most a v2 header may hold after its 16 fixed bytes: addresses (216 for AF_UNIX) and
    /// TLVs. The format allows 65 535; the proxies that send TLVs (AWS, Google Cloud and Azure
    /// load balancers: endpoint and link ids) send tens of bytes.
    package static let v2MaxAddressLength = 4096

    /// Reads a header from the start of `bytes`. Called again on each read until the header is
    /// whole, so only what is needed is copied: a v1 line's 107 bytes at most, a v2 header's 16
    /// fixed bytes until its announced length has come (copying everything on every read would
    /// cost the square of the length: a long header sent a few bytes at a time would keep a core
    /// busy).
    package static func parse(_ bytes: some RandomAccessCollection<UInt8>) -> Outcome {
        guard let first = bytes.first else { return .incomplete }
        if first == v2Signature[0] {
            let fixed = Array(bytes.prefix(16))
            guard fixed.count == 16 else { return parseV2(fixed) }
            let length = 16 + (Int(fixed[14]) << 8 | Int(fixed[15]))
            guard bytes.count >= length else { return parseV2(fixed) }
            return parseV2(Array(bytes.prefix(length)))
        }
        if first == v1Prefix[0] {
            return parseV1(Array(bytes.prefix(v1MaxLength)))
        }
        return .invalid("the connection does not start with a PROXY protocol header")
    }

    // MARK: Version 1: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`

    static func parseV1(_ bytes: [UInt8]) -> Outcome {
        let prefixLength = min(bytes.count, v1Prefix.count)
        guard bytes[0..<prefixLength].elementsEqual(v1Prefix[0..<prefixLength]) else { return .invalid("not a PROXY protocol header") }
        guard let lf = bytes.prefix(v1MaxLength).firstIndex(of: 0x0A) else {
            if let bad = bytes.prefix(v1MaxLength).firstIndex(where: { $0 < 0x20 && $0 != 0x0D || $0 > 0x7E }) {
                return .invalid("a v1 header has a control or non-ASCII byte at \(bad)")
            }
            if let cr = bytes.firstIndex(of: 0x0D), cr + 1 < bytes.count { return .invalid("a v1 header's CR is not followed by LF") }
            return bytes.count >= v1MaxLength ? .invalid("a v1 header is longer than \(v1MaxLength) bytes") : .incomplete
        }
        guard lf >= 1, bytes[lf - 1] == 0x0D else { return .invalid("a v1 header must end in CRLF") }
        let line = bytes[..<(lf - 1)]
        guard line.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else { return .invalid("a v1 header has a control or non-ASCII byte") }
        // Exactly one space between fields (the specification's grammar).
        let fields = line.split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        let length = lf + 1
        guard fields.count >= 2, fields[0] == "PROXY" else { return .invalid("a v1 header must start with 'PROXY '") }
        switch fields[1] {
        case "UNKNOWN":
            // Whatever follows UNKNOWN is ignored (the specification's rule).
            return .header(Header(source: nil, destination: nil, length: length))
        case "TCP4", "TCP6":
            guard fields.count == 6 else { return .invalid("a v1 \(fields[1]) header has source, destination and two ports") }
            let v4 = fields[1] == "TCP4"
            guard let source = IPAddress(fields[2]), let destination = IPAddress(fields[3]),
                  source.isIPv4 == v4, destination.isIPv4 == v4,
                  // The text must be the address as written: no IPv4-mapped IPv6 in TCP6.
                  fields[2].contains(":") != v4, fields[3].contains(":") != v4 else {
                return .invalid("a v1 \(fields[1]) header's addresses are not \(v4 ? "IPv4" : "IPv6") addresses")
            }
            guard let sourcePort = port(fields[4]), let destinationPort = port(fields[5]) else {
                return .invalid("a v1 header's ports must be 0-65535 without leading zeros")
            }
            return .header(Header(source: (source.description, sourcePort), destination: (destination.description, destinationPort), length: length))
        default:
            return .invalid("a v1 header's protocol must be TCP4, TCP6 or UNKNOWN")
        }
    }

    private static func port(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              text == "0" || text.first != "0", let value = UInt16(text) else { return nil }
        return value
    }

    // MARK: Version 2: signature, version/command, family/protocol, length, addresses, TLVs

    static func parseV2(_ bytes: [UInt8]) -> Outcome {
        let signatureLength = min(bytes.count, v2Signature.count)
        guard bytes[0..<signatureLength].elementsEqual(v2Signature[0..<signatureLength]) else {
            return .invalid("not a PROXY protocol v2 signature")
        }
        guard bytes.count >= 16 else {
            if bytes.count > 12, bytes[12] >> 4 != 2 { return .invalid("PROXY protocol version \(bytes[12] >> 4) is not 2") }
            if bytes.count > 12, bytes[12] & 0x0F > 1 { return .invalid("PROXY protocol v2 command \(bytes[12] & 0x0F) is neither LOCAL nor PROXY") }
            return .incomplete
        }
        let versionCommand = bytes[12], familyProtocol = bytes[13]
        guard versionCommand >> 4 == 2 else { return .invalid("PROXY protocol version \(versionCommand >> 4) is not 2") }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid("PROXY protocol v2 command \(command) is neither LOCAL nor PROXY") }
        let addressLength = Int(bytes[14]) << 8 | Int(bytes[15])
        guard addressLength <= v2MaxAddressLength else {
            return .invalid("a PROXY protocol v2 header announces \(addressLength) bytes after its fixed part, more than \(v2MaxAddressLength)")
        }
        let length = 16 + addressLength
        // Addresses must fit in what the header says it holds, before waiting for the rest.
        let family = familyProtocol >> 4, transport = familyProtocol & 0x0F
        guard family <= 3, transport <= 2 else { return .invalid("PROXY protocol v2 family/protocol byte 0x\(String(familyProtocol, radix: 16)) is not defined") }
        let needed: Int
        switch family {
        case 1: needed = 12
        case 2: needed = 36
        case 3: needed = 216
        default: needed = 0
        }
        guard addressLength >= needed else { return .invalid("PROXY protocol v2 addresses need \(needed) bytes, the header holds \(addressLength)") }
        guard bytes.count >= length else { return .incomplete }
        if command == 0 {
            // LOCAL: the proxy's own connection; the addresses (if any) are ignored.
            return .header(Header(source: nil, destination: nil, length: length))
        }
        // Over IPv4 or IPv6, TCP or UDP (the stream protocol is what carries HTTP here, but the
        // header describes the original connection); UNSPEC or UNIX: no address to use.
        guard (family == 1 || family == 2), transport != 0 else {
            return .header(Header(source: nil, destination: nil, length: length))
        }
        let width = family == 1 ? 4 : 16
        let body = Array(bytes[16..<(16 + needed)])
        let source = IPAddress(bytes: Array(body[0..<width])), destination = IPAddress(bytes: Array(body[width..<(2 * width)]))
        let sourcePort = UInt16(body[2 * width]) << 8 | UInt16(body[2 * width + 1])
        let destinationPort = UInt16(body[2 * width + 2]) << 8 | UInt16(body[2 * width + 3])
        // IPv4-mapped IPv6 addresses are the IPv4 address they map (as the listener reports them).
        let sourceText = IPAddress(source.description).map(\.description) ?? source.description
        let destinationText = IPAddress(destination.description).map(\.description) ?? destination.description
        return .header(Header(source: (sourceText, sourcePort), destination: (destinationText, destinationPort), length: length))
    }

    /// A v2 header for `source` → `destination` (nil: LOCAL), with `tlv` bytes after the
    /// addresses: for tests and the fuzz target's seeds.
    package static func encodeV2(source: (String, UInt16)?, destination: (String, UInt16)?, tlv: [UInt8] = []) -> [UInt8] {
        var bytes = v2Signature
        guard let source, let destination, let from = IPAddress(source.0), let to = IPAddress(destination.0) else {
            bytes += [0x20, 0x00] + [UInt8(tlv.count >> 8), UInt8(tlv.count & 0xFF)] + tlv
            return bytes
        }
        // One family for both: an IPv4 address beside an IPv6 one goes as IPv4-mapped IPv6.
        let v4 = from.isIPv4 && to.isIPv4
        func wide(_ address: IPAddress) -> [UInt8] {
            address.isIPv4 && !v4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + address.bytes : address.bytes
        }
        let body = wide(from) + wide(to) + [UInt8(source.1 >> 8), UInt8(source.1 & 0xFF), UInt8(destination.1 >> 8), UInt8(destination.1 & 0xFF)] + tlv
        bytes += [0x21, v4 ? 0x11 : 0x21, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        return bytes
    }
}
