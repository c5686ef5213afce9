#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-for-byte string equality. Swift's `==` compares by Unicode canonical equivalence, but
/// `iss`, `aud` and `kid` must match exactly (RFC 7519 §7.3: no normalization).
public enum ExactString {
    /// True when `a` and `b` have the same UTF-8 bytes.
    @inline(__always)
    public static func equal(_ a: String, _ b: String) -> Bool {
        let fast = a.utf8.withContiguousStorageIfAvailable { x in
            b.utf8.withContiguousStorageIfAvailable { y in
                x.count == y.count && (x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
            }
        }
        if let fast, let result = fast { return result }
        return a.utf8.elementsEqual(b.utf8)
    }
}
