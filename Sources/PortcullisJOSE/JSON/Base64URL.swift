/// Strict unpadded base64url (RFC 7515 §2, RFC 4648 §5).
///
/// Hand-written because Foundation's decoder is lenient in exactly the ways JWS forbids (it takes
/// padding, and ignores non-zero trailing bits with some options) and allocates through `Data`.
/// Strictness matters: if two encodings decoded to the same bytes, the signed text (which is the
/// encoded form) and the meaning (the decoded form) could be varied independently.
public enum Base64URL {
    /// Decodes strict unpadded base64url: only `A-Z a-z 0-9 - _`, no `=`, no whitespace, a length
    /// that is not 1 mod 4, and zero bits in the unused low bits of the last character.
    /// Returns nil for anything else.
    public static func decode(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        let count = input.count
        let remainder = count & 3
        if remainder == 1 { return nil }
        let outputCount = (count >> 2) * 3 + (remainder == 0 ? 0 : remainder - 1)
        var valid = true
        let output = [UInt8](unsafeUninitializedCapacity: outputCount) { buffer, initialized in
          decodingTable.withUnsafeBufferPointer { table in
            @inline(__always) func value(_ c: UInt8) -> UInt8 { table[Int(c)] }
            var o = 0
            var i = 0
            let full = count - remainder
            while i < full {
                let a = value(input[i]), b = value(input[i + 1]), c = value(input[i + 2]), d = value(input[i + 3])
                if (a | b | c | d) & 0x80 != 0 { valid = false; break }
                let word = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                buffer[o] = UInt8(truncatingIfNeeded: word >> 16)
                buffer[o + 1] = UInt8(truncatingIfNeeded: word >> 8)
                buffer[o + 2] = UInt8(truncatingIfNeeded: word)
                o += 3
                i += 4
            }
            if valid && remainder == 2 {
                let a = value(input[i]), b = value(input[i + 1])
                if (a | b) & 0x80 != 0 || b & 0x0F != 0 { valid = false } else {
                    buffer[o] = a << 2 | b >> 4
                    o += 1
                }
            } else if valid && remainder == 3 {
                let a = value(input[i]), b = value(input[i + 1]), c = value(input[i + 2])
                if (a | b | c) & 0x80 != 0 || c & 0x03 != 0 { valid = false } else {
                    buffer[o] = a << 2 | b >> 4
                    buffer[o + 1] = (b & 0x0F) << 4 | c >> 2
                    o += 2
                }
            }
            initialized = valid ? o : 0
          }
        }
        return valid ? output : nil
    }

    /// Decodes the UTF-8 bytes of `text`; see ``decode(_:)-(UnsafeRawBufferPointer)``.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var copy = String(text)
        return copy.withUTF8 { decode(UnsafeRawBufferPointer($0)) }
    }

    /// Unpadded base64url of `bytes`.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 6 {
                bits -= 6
                out.append(alphabet[Int((buffer >> UInt32(bits)) & 0x3F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 {
            out.append(alphabet[Int((buffer << UInt32(6 - bits)) & 0x3F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// 6-bit values by character; 0x80 marks characters outside the alphabet.
    private static let decodingTable: [UInt8] = (0...255).map { value(UInt8($0)) }

    /// The 6-bit value of one base64url character, or 0x80 for a character outside the alphabet.
    @inline(__always)
    static func value(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c &- UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c &- UInt8(ascii: "a") &+ 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0") &+ 52
        case UInt8(ascii: "-"): return 62
        case UInt8(ascii: "_"): return 63
        default: return 0x80
        }
    }
}
