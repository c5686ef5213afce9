import PortcullisConfig

/// A route's scope requirement: `{any_of: [a, b]}` or `{all_of: [a, b]}`.
public struct ScopeRequirement: Sendable, Equatable {
    /// How the listed scopes combine.
    public enum Mode: Sendable, Equatable {
        /// At least one of the scopes.
        case anyOf
        /// Every one of the scopes.
        case allOf
    }

    /// Whether any or all of `scopes` are needed.
    public var mode: Mode
    /// The scopes named (when read from configuration: at least one, none empty or with a space).
    public var scopes: [String]

    /// A requirement from its parts; nothing is checked.
    public init(mode: Mode, scopes: [String]) {
        self.mode = mode
        self.scopes = scopes
    }

    /// Reads `{any_of: [...]}` or `{all_of: [...]}` (exactly one key, a non-empty list).
    public init(node: ConfigNode) throws {
        var map = try node.mapping()
        let anyOf = map.optional("any_of")
        let allOf = map.optional("all_of")
        try map.finish()
        switch (anyOf, allOf) {
        case (let list?, nil):
            mode = .anyOf
            scopes = try list.stringList()
            if scopes.isEmpty { throw list.error("list at least one scope") }
        case (nil, let list?):
            mode = .allOf
            scopes = try list.stringList()
            if scopes.isEmpty { throw list.error("list at least one scope") }
        case (_?, _?):
            throw node.error("give either any_of or all_of, not both")
        case (nil, nil):
            throw node.error("expected any_of or all_of")
        }
        if let empty = scopes.first(where: { $0.isEmpty || $0.contains(" ") }) {
            throw node.error("scope '\(empty)' must be non-empty and contain no spaces")
        }
    }

    /// True when `token`'s scopes include any (`anyOf`) or all (`allOf`) of `scopes`, compared
    /// byte for byte.
    public func isSatisfied(by token: VerifiedToken) -> Bool {
        switch mode {
        case .anyOf: return scopes.contains(where: has)
        case .allOf: return scopes.allSatisfy(has)
        }
        // Byte for byte, as `ClaimRule`: not Swift's canonical equivalence.
        func has(_ scope: String) -> Bool {
            token.scopes.contains { ExactString.equal($0, scope) }
        }
    }
}
