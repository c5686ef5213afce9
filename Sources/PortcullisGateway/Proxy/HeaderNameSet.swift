/// A set of header names matched case-insensitively without allocating: the request path checks
/// every header of every request against it, and `lowercased()` would allocate a string each time.
struct HeaderNameSet: Sendable {
    /// Lower-case names bucketed by UTF-8 length, indexed by that length (an array, not a
    /// dictionary: a lookup is then an index, not a hash).
    private var byLength: [[[UInt8]]] = []

    init(_ names: some Sequence<String>) {
        for name in names { insert(name) }
    }

    mutating func insert(_ name: String) {
        let lower = Array(name.lowercased().utf8)
        if byLength.count <= lower.count { byLength += Array(repeating: [], count: lower.count + 1 - byLength.count) }
        if byLength[lower.count].contains(lower) { return }
        byLength[lower.count].append(lower)
    }

    func contains(_ name: String) -> Bool {
        contains(name.utf8)
    }

    /// Whether the name in `bytes` is in the set.
    func contains(_ bytes: some Collection<UInt8>) -> Bool {
        let length = bytes.count
        guard length < byLength.count else { return false }
        for candidate in byLength[length] where Self.equalsIgnoringASCIICase(bytes, candidate) {
            return true
        }
        return false
    }

    static func equalsIgnoringASCIICase(_ name: some Collection<UInt8>, _ lower: some Collection<UInt8>) -> Bool {
        guard name.count == lower.count else { return false }
        // Header names from the parser are native strings: compare their bytes in place.
        return name.withContiguousStorageIfAvailable { bytes in equal(bytes, lower) } ?? equal(name, lower)
    }

    private static func equal(_ name: some Collection<UInt8>, _ lower: some Collection<UInt8>) -> Bool {
        for (byte, expected) in zip(name, lower) {
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            if folded != expected { return false }
        }
        return true
    }

    /// True when `name` equals `lower` (already lower-case) ignoring ASCII case.
    static func matches(_ name: String, _ lower: StaticString) -> Bool {
        lower.withUTF8Buffer { equalsIgnoringASCIICase(name.utf8, $0) }
    }
}
