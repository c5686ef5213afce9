/// A string that is equal and hashes byte for byte (its UTF-8), for the sets and dictionaries keyed
/// by what tokens name — `sub`, `client_id`, `kid`, `iss`. Swift's `String` compares and hashes
/// by Unicode canonical equivalence, so a dictionary of `String`s holding `user-Å` (U+212B) would
/// find it under `user-Å` (U+00C5) too: a revocation of one subject would refuse another's
/// tokens. RFC 7519 §7.3 compares such values without normalization.
public struct ExactKey: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The string, as given.
    public let text: String

    /// A key for `text`.
    public init(_ text: String) {
        self.text = text
    }

    /// A key for the literal.
    public init(stringLiteral value: String) {
        text = value
    }

    /// True when both texts have the same UTF-8 bytes.
    public static func == (lhs: ExactKey, rhs: ExactKey) -> Bool {
        ExactString.equal(lhs.text, rhs.text)
    }

    /// Hashes the text's UTF-8 bytes.
    public func hash(into hasher: inout Hasher) {
        // `withUTF8` needs a mutable string; a native one is contiguous, so nothing is copied.
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// The text.
    public var description: String { text }
}
