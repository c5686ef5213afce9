/// A set of header names matched case-insensitively without allocating: the request path checks
/// every header of every request against it, and `lowercased()` would allocate a string each time.
struct HeaderNameSet: Sendable {
    /// Lower-case names bucketed by UTF-8 length, indexed by that length (an array, not a
    /// dictionary: a lookup is then an index, not a hash). Names longer than `bucketed` bytes
    /// share the last bucket, so a client-supplied name cannot make the array long.
    private var byLength: [[[UInt8]]] = []
    private static let bucketed = 64
    /// Buckets that grew past `linearLimit` names, hashed. Only a list a peer wrote gets there —
    /// a `Connection` field naming thousands of options — and each insert and lookup scanning a
    /// whole bucket would make such a list cost the square of its length, holding the event loop
    /// for every client on it (security.md has the figures). The sets the
    /// gateway builds from configuration stay linear: a lookup there allocates nothing.
    private var hashed: [Int: Set<[UInt8]>]?
    private static let linearLimit = 32

    init(_ names: some Sequence<String>) {
        for name in names { insert(name) }
    }

    mutating func insert(_ name: String) {
        let lower = Array(name.lowercased().utf8)
        let bucket = min(lower.count, Self.bucketed)
        if hashed?[bucket] != nil {
            hashed?[bucket]?.insert(lower)
            return
        }
        if byLength.count <= bucket { byLength += Array(repeating: [], count: bucket + 1 - byLength.count) }
        if byLength[bucket].contains(lower) { return }
        byLength[bucket].append(lower)
        if byLength[bucket].count > Self.linearLimit {
            hashed = hashed ?? [:]
            hashed?[bucket] = Set(byLength[bucket])
            byLength[bucket] = []
        }
    }

    func contains(_ name: String) -> Bool {
        contains(name.utf8)
    }

    /// Whether the name in `bytes` is in the set.
    func contains(_ bytes: some Collection<UInt8>) -> Bool {
        let bucket = min(bytes.count, Self.bucketed)
        if let hashed, let names = hashed[bucket] { return names.contains(bytes.map(Self.folded)) }
        guard bucket < byLength.count else { return false }
        for candidate in byLength[bucket] where Self.equalsIgnoringASCIICase(bytes, candidate) {
            return true
        }
        return false
    }

    static func equalsIgnoringASCIICase(_ name: some Collection<UInt8>, _ lower: some Collection<UInt8>) -> Bool {
        guard name.count == lower.count else { return false }
        // Header names from the parser are native strings and the lower-case sides literals or
        // arrays: compare their bytes in place (iterating a `String.UTF8View` in step with another
        // collection showed in request-path profiles).
        return name.withContiguousStorageIfAvailable { bytes in
            lower.withContiguousStorageIfAvailable { expected in equal(bytes, expected) } ?? equal(bytes, lower)
        } ?? equal(name, lower)
    }

    private static func equal(_ name: UnsafeBufferPointer<UInt8>, _ lower: UnsafeBufferPointer<UInt8>) -> Bool {
        for index in 0..<name.count where folded(name[index]) != lower[index] { return false }
        return true
    }

    private static func equal(_ name: some Collection<UInt8>, _ lower: some Collection<UInt8>) -> Bool {
        for (byte, expected) in zip(name, lower) where folded(byte) != expected { return false }
        return true
    }

    private static func folded(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    /// True when `name` equals `lower` (already lower-case) ignoring ASCII case.
    static func matches(_ name: String, _ lower: StaticString) -> Bool {
        lower.withUTF8Buffer { equalsIgnoringASCIICase(name.utf8, $0) }
    }
}
