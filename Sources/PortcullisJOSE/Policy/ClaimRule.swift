import PortcullisConfig

/// A condition on a verified token's claims: `{claim: realm_access.roles, contains: admin}` or
/// `{claim: tenant, equals: acme}`. The claim is a dotted path through nested objects.
///
/// `equals` compares the claim with the value (numbers by value; YAML scalars are matched as
/// strings, booleans or numbers according to the claim's type). `contains` holds when the claim
/// is an array with an element equal to the value, or a string whose space-separated words
/// include it. A missing claim never matches. Strings match byte for byte: Swift's `==` would take
/// canonically equivalent spellings (`A` + U+030A for `Å`, the Kelvin sign for `K`) as equal, and
/// a token whose issuer lets users choose such a value would pass a rule written for another.
public struct ClaimRule: Sendable, Equatable, CustomStringConvertible {
    /// What the claim's value must satisfy.
    public enum Condition: Sendable, Equatable {
        /// The claim equals the value, compared as the claim's type (string, boolean or number).
        case equals(String)
        /// The claim is an array with an element equal to the value, or a string with it as one of its
        /// space-separated words.
        case contains(String)
    }

    /// Dotted path of the claim, e.g. `realm_access.roles`.
    public var claim: String
    /// What the claim must satisfy.
    public var condition: Condition

    /// A rule from its parts; the path is not checked.
    public init(claim: String, condition: Condition) {
        self.claim = claim
        self.condition = condition
    }

    /// Reads `{claim: path, equals: value}` or `{claim: path, contains: value}`.
    /// - Throws: `ConfigError` for a missing or empty `claim`, an empty path component, neither or
    ///   both of `equals` and `contains`, or an unknown key.
    public init(node: ConfigNode) throws {
        var map = try node.mapping()
        let claimNode = try map.required("claim")
        claim = try claimNode.nonEmptyString()
        if claim.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            throw claimNode.error("claim path has an empty component")
        }
        let equals = map.optional("equals")
        let contains = map.optional("contains")
        try map.finish()
        switch (equals, contains) {
        case (let value?, nil): condition = .equals(try value.string())
        case (nil, let value?): condition = .contains(try value.string())
        case (_?, _?): throw node.error("give either equals or contains, not both")
        case (nil, nil): throw node.error("expected equals or contains")
        }
    }

    /// True when `token`'s claim at `claim` satisfies `condition`; false when the claim is missing.
    public func matches(_ token: VerifiedToken) -> Bool {
        guard let value = token.claims.value(atPath: claim) else { return false }
        switch condition {
        case .equals(let expected):
            return Self.scalarEquals(value, expected)
        case .contains(let expected):
            switch value {
            case .array(let items): return items.contains { Self.scalarEquals($0, expected) }
            case .string(let text): return text.split(separator: " ").contains { ExactString.equal(String($0), expected) }
            default: return false
            }
        }
    }

    /// Compares a claim value with a YAML scalar written as text.
    static func scalarEquals(_ value: JSONValue, _ expected: String) -> Bool {
        switch value {
        case .string(let text): return ExactString.equal(text, expected)
        case .bool(let flag): return (flag ? "true" : "false") == expected
        case .integer(let number): return Int64(expected) == number
        case .number(let number): return Double(expected) == number
        default: return false
        }
    }

    /// `claim <path> equals "<value>"` or `claim <path> contains "<value>"`.
    public var description: String {
        switch condition {
        case .equals(let value): return "claim \(claim) equals \"\(value)\""
        case .contains(let value): return "claim \(claim) contains \"\(value)\""
        }
    }
}
