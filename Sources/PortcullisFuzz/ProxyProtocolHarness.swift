import PortcullisGateway

/// The `proxy-protocol` target: the PROXY protocol header parser (`ProxyProtocolHeader`) that
/// reads the first bytes of every connection on a `proxy_protocol` listener. Besides not
/// crashing, the answer must not depend on how the bytes arrive or what follows a header:
///
/// - a header of length n: every shorter prefix is `incomplete`, the first n bytes alone give the
///   same header, and bytes after it change nothing; n is at most 107 (v1) or 16 + 65535 (v2);
/// - `incomplete`: every prefix is `incomplete` too, and the input is shorter than the longest
///   header;
/// - `invalid`: any extension is `invalid` too (no later byte can make a refused start valid);
/// - a v2 header naming a source re-encodes (`encodeV2`) to a header with the same addresses.
enum ProxyProtocolHarness {
    static func run(_ input: [UInt8]) {
        let outcome = ProxyProtocolHeader.parse(input)
        switch outcome {
        case .header(let header):
            let isV1 = input.first == UInt8(ascii: "P")
            guard header.length <= (isV1 ? ProxyProtocolHeader.v1MaxLength : 16 + 65535), header.length <= input.count else {
                fatalError("header length \(header.length) out of bounds for \(input.count) bytes")
            }
            for end in stride(from: 0, to: header.length, by: max(1, header.length / 64)) {
                guard ProxyProtocolHeader.parse(input[..<end]) == .incomplete else { fatalError("prefix \(end) of a \(header.length)-byte header is not incomplete") }
            }
            guard ProxyProtocolHeader.parse(input[..<header.length]) == outcome,
                  ProxyProtocolHeader.parse(Array(input[..<header.length]) + [0x00, 0x0D, 0x0A, 0xFF]) == outcome else {
                fatalError("the bytes after a header changed it")
            }
            if !isV1, let source = header.source, let destination = header.destination {
                let again = ProxyProtocolHeader.parse(ProxyProtocolHeader.encodeV2(source: source, destination: destination))
                guard case .header(let reencoded) = again, reencoded.source?.address == source.address, reencoded.source?.port == source.port,
                      reencoded.destination?.address == destination.address, reencoded.destination?.port == destination.port else {
                    fatalError("a v2 header does not survive re-encoding: \(again)")
                }
            }
        case .incomplete:
            guard input.count < 16 + 65535 else { fatalError("\(input.count) bytes still incomplete") }
            for end in stride(from: 0, to: input.count, by: max(1, input.count / 64)) {
                guard ProxyProtocolHeader.parse(input[..<end]) == .incomplete else { fatalError("a prefix of an incomplete input is not incomplete") }
            }
        case .invalid:
            for extra in [[UInt8](), [0x0D, 0x0A], [UInt8](repeating: 0, count: 64)] {
                guard case .invalid = ProxyProtocolHeader.parse(input + extra) else { fatalError("an extension of an invalid input is not invalid") }
            }
        }
    }

    static var seeds: [[UInt8]] {
        [
            Array("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n".utf8),
            Array("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8),
            ProxyProtocolHeader.encodeV2(source: ("192.0.2.1", 443), destination: ("10.0.0.1", 80)),
            ProxyProtocolHeader.encodeV2(source: ("2001:db8::9", 1), destination: ("::1", 2), tlv: [0x01, 0x00, 0x02, 0x68, 0x32]),
            ProxyProtocolHeader.encodeV2(source: nil, destination: nil),
        ]
    }
}
