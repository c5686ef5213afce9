import Foundation
@testable import PortcullisFuzz
@testable import PortcullisGateway
import Testing

/// The PROXY protocol header parser on its own: valid headers of both versions, every prefix of
/// one waiting for more, and the malformed shapes refused.
@Suite("PROXY protocol header")
struct ProxyProtocolUnitTests {
    func source(_ outcome: ProxyProtocolHeader.Outcome) -> String? {
        if case .header(let header) = outcome { return header.source.map { "\($0.address) \($0.port)" } ?? "none" }
        return nil
    }

    func isInvalid(_ outcome: ProxyProtocolHeader.Outcome) -> Bool {
        if case .invalid = outcome { return true }
        return false
    }

    @Test("v1 headers: TCP4, TCP6 and UNKNOWN, with the bytes after the header left alone", arguments: [
        ("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", "192.0.2.1 56324"),
        ("PROXY TCP6 2001:DB8::1 ::1 1 65535\r\n", "2001:db8::1 1"),
        ("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", "0.0.0.0 0"),
        ("PROXY UNKNOWN\r\n", "none"),
        ("PROXY UNKNOWN ffff:: 1.2.3.4 1 2\r\n", "none"),
    ])
    func validV1(_ text: String, _ expected: String) {
        let bytes = Array(text.utf8)
        let outcome = ProxyProtocolHeader.parse(bytes + Array("GET / HTTP/1.1\r\n".utf8))
        #expect(source(outcome) == expected)
        if case .header(let header) = outcome { #expect(header.length == bytes.count) }
        for end in 0..<bytes.count { #expect(ProxyProtocolHeader.parse(bytes[..<end]) == .incomplete, "prefix \(end)") }
    }

    @Test("malformed v1 headers are refused", arguments: [
        "GET / HTTP/1.1\r\n", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\u{7F}\r\n",
        "PROXY UNKNOWN " + String(repeating: "x", count: 100) + "\r\n",
    ])
    func invalidV1(_ text: String) {
        #expect(isInvalid(ProxyProtocolHeader.parse(Array(text.utf8))), "\(text.debugDescription)")
    }

    @Test("v2 headers: IPv4, IPv6, IPv4-mapped, LOCAL and UNSPEC, TLVs skipped; every prefix waits for more")
    func validV2() {
        let cases: [([UInt8], String)] = [
            (ProxyProtocolHeader.encodeV2(source: ("192.0.2.1", 443), destination: ("10.0.0.1", 80)), "192.0.2.1 443"),
            (ProxyProtocolHeader.encodeV2(source: ("2001:db8::9", 1), destination: ("::1", 2), tlv: [0x01, 0x00, 0x02, 0x68, 0x32]), "2001:db8::9 1"),
            (ProxyProtocolHeader.encodeV2(source: nil, destination: nil), "none"),
            (ProxyProtocolHeader.v2Signature + [0x21, 0x00, 0x00, 0x00], "none"),
        ]
        for (bytes, expected) in cases {
            let outcome = ProxyProtocolHeader.parse(bytes + [0x16, 0x03, 0x01])
            #expect(source(outcome) == expected)
            if case .header(let header) = outcome { #expect(header.length == bytes.count) }
            for end in 0..<bytes.count { #expect(ProxyProtocolHeader.parse(bytes[..<end]) == .incomplete, "prefix \(end) of \(expected)") }
        }
        // An IPv6 header whose source is IPv4-mapped names the IPv4 client.
        var mapped = ProxyProtocolHeader.encodeV2(source: ("2001:db8::9", 1), destination: ("::1", 2))
        mapped.replaceSubrange(16..<32, with: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 33])
        #expect(source(ProxyProtocolHeader.parse(mapped)) == "192.0.2.33 1")
    }

    @Test("malformed v2 headers are refused: version, command, family, an address block too short for its family")
    func invalidV2() {
        let good = ProxyProtocolHeader.encodeV2(source: ("192.0.2.1", 443), destination: ("10.0.0.1", 80))
        func with(_ index: Int, _ value: UInt8) -> [UInt8] {
            var bytes = good
            bytes[index] = value
            return bytes
        }
        #expect(isInvalid(ProxyProtocolHeader.parse(with(12, 0x11))), "version 1 in the v2 format")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(12, 0x22))), "command 2")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(13, 0x41))), "family 4")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(13, 0x13))), "transport 3")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(15, 11))), "11 bytes for IPv4 addresses")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(13, 0x21))), "12 bytes for IPv6 addresses")
        #expect(isInvalid(ProxyProtocolHeader.parse(with(5, 0x00))), "signature")
        #expect(isInvalid(ProxyProtocolHeader.parse(Array(good[0..<13]).replacing([0x21], with: [0x31]))), "version 3, seen before the rest")
    }

    /// The format lets a header announce 65 535 bytes after its fixed part, and the build before
    /// waited for all of them, copying what had come on every read: one such header sent 8 bytes
    /// at a time cost a second of the event loop (an attacker review).
    @Test("a v2 header announcing more than 4 KiB of addresses and TLVs is refused from its fixed 16 bytes; one of 4 KiB is read")
    func v2LengthBound() {
        let good = ProxyProtocolHeader.encodeV2(source: ("192.0.2.1", 443), destination: ("10.0.0.1", 80))
        func announcing(_ length: Int) -> [UInt8] {
            var bytes = Array(good[0..<16])
            bytes[14] = UInt8(length >> 8)
            bytes[15] = UInt8(length & 0xFF)
            return bytes
        }
        #expect(isInvalid(ProxyProtocolHeader.parse(announcing(65_535))), "64 KiB announced")
        #expect(isInvalid(ProxyProtocolHeader.parse(announcing(4097))), "4 KiB + 1 announced")
        // 4 KiB: the addresses, then a TLV of type 0xEA (a custom one) filling the rest.
        var bounded = announcing(4096) + Array(good[16..<28])
        bounded += [0xEA, UInt8((4096 - 12 - 3) >> 8), UInt8((4096 - 12 - 3) & 0xFF)] + [UInt8](repeating: 0x61, count: 4096 - 12 - 3)
        guard case .incomplete = ProxyProtocolHeader.parse(bounded.dropLast()) else { Issue.record("a header cut short was not incomplete"); return }
        guard case .header(let header) = ProxyProtocolHeader.parse(bounded + Array("GET /".utf8)) else { Issue.record("a 4 KiB header was refused"); return }
        #expect(header.length == 16 + 4096)
        #expect(header.source?.address == "192.0.2.1")
    }

    /// Found by the fuzz smoke in CI: an IPv6 source beside an IPv4-mapped destination parsed,
    /// but did not survive re-encoding (the destination stayed `::ffff:…` text while the encoder
    /// read it as IPv4 and wrote a LOCAL header).
    @Test("a v2 header mixing an IPv6 address with an IPv4-mapped one names both as the listener would, and survives re-encoding")
    func mixedFamilies() throws {
        let crash = try #require(Data(base64Encoded: "DQoNCgANClFVSVQKISEAKSABDbgAAAAAAAAAAAAAAAkAAAAAAAAAAAAA/////////////////////////////////////////////////////////////////////wAAAAAAAQABAAIBAAJoMg=="))
        let input = Array(crash)
        guard case .header(let header) = ProxyProtocolHeader.parse(input) else {
            Issue.record("the header did not parse")
            return
        }
        #expect(header.source?.address == "2001:db8::9")
        #expect(header.destination?.address == "255.255.255.255")
        let again = ProxyProtocolHeader.parse(ProxyProtocolHeader.encodeV2(source: ("2001:db8::9", 1), destination: ("255.255.255.255", 2)))
        guard case .header(let reencoded) = again else {
            Issue.record("the re-encoded header did not parse")
            return
        }
        #expect(reencoded.source?.address == "2001:db8::9")
        #expect(reencoded.destination?.address == "255.255.255.255")
        // The fuzz target's own oracle, on the input that tripped it.
        ProxyProtocolHarness.run(input)
    }
}
