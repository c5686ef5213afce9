import Synchronization

/// `X-Request-Id`: a well-formed incoming id is kept so traces join up; anything else is replaced.
enum RequestID {
    static func accept(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count) else { return nil }
        let ok = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
        }
        return ok ? value : nil
    }

    /// 32 hex digits: a counter hashed under a random per-process key (two `Hasher` outputs, each
    /// keyed with the same 128 random bits and a different domain). Unique in practice and
    /// unpredictable without the key, so that ids tell an upstream or a client nothing of how many
    /// requests the node served between two of its own (a counter in the clear would); no system
    /// call per request.
    static func generate() -> String {
        let sequence = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return String(unsafeUninitializedCapacity: 32) { buffer in
            writeHex(keyed(sequence, domain: 0), into: buffer, at: 0)
            writeHex(keyed(sequence, domain: 1), into: buffer, at: 16)
            return 32
        }
    }

    private static func keyed(_ sequence: UInt64, domain: UInt64) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(key.0)
        hasher.combine(key.1)
        hasher.combine(domain)
        hasher.combine(sequence)
        return UInt64(UInt(bitPattern: hasher.finalize()))
    }

    private static let key = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
    private static let counter = Atomic<UInt64>(0)

    private static func writeHex(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { table in
            for index in 0..<16 {
                buffer[offset + index] = table[Int((value >> (60 - 4 * UInt64(index))) & 0xF)]
            }
        }
    }
}
