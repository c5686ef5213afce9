import PortcullisConfig

/// How request targets are normalised before routing: the `http.path` section of the gateway
/// config. Routes match the normalised path and the upstream receives exactly that path (plus the
/// query as sent), or the request is refused with 400 — an upstream never gets a path the router
/// did not see. What is always done, whatever the options: percent-encoded unreserved characters
/// (`%61` → `a`) are decoded, the hex digits of the remaining escapes are upper-cased, and
/// fragments, `%00`, malformed escapes, control characters, `\` and raw non-ASCII bytes are
/// refused. See docs/configuration.md ("Request targets").
public struct PathPolicy: Sendable, Equatable {
    /// `.` and `..` segments, also percent-encoded and with segment parameters (`..;x`).
    public enum DotSegments: String, Sendable, CaseIterable {
        /// 400 (the default): browsers and HTTP libraries resolve them before sending.
        case reject
        /// Resolved as RFC 3986 §5.2.4 says; `..` above the root is refused.
        case resolve
    }

    /// Empty segments (`//`).
    public enum DuplicateSlashes: String, Sendable, CaseIterable {
        /// Merged into one (the default), as most upstream frameworks do.
        case merge
        case reject
    }

    /// `%2F` and `%5C` (an encoded `/` or `\`).
    public enum EscapedSlashes: String, Sendable, CaseIterable {
        /// 400 (the default): an upstream that decodes them sees other segments than the router.
        case reject
        /// Passed on encoded, part of their segment. Only for upstreams that never decode them.
        case keep
    }

    /// `;` in the path (segment parameters such as `;jsessionid=…`).
    public enum Semicolons: String, Sendable, CaseIterable {
        /// 400 (the default): Tomcat, Jetty and Spring strip segment parameters before routing, so
        /// `/admin;x/y` is `/admin/y` to them but not to a prefix match.
        case reject
        /// Passed on as part of their segment. Only for upstreams that never strip them.
        case keep
    }

    public var dotSegments = DotSegments.reject
    public var duplicateSlashes = DuplicateSlashes.merge
    public var escapedSlashes = EscapedSlashes.reject
    public var semicolons = Semicolons.reject
    /// Whether route prefixes match only in the same letter case. Off by default: matching
    /// `/ADMIN` against an `/admin` route is safe whether the upstream ignores case (it serves the
    /// same resource the route protects) or not (it answers 404), while a case-sensitive match in
    /// front of a case-insensitive upstream lets `/ADMIN` past the route.
    public var caseSensitive = false

    public init() {}

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let v = map.optional("dot_segments") { dotSegments = try v.choice(DotSegments.self) }
        if let v = map.optional("duplicate_slashes") { duplicateSlashes = try v.choice(DuplicateSlashes.self) }
        if let v = map.optional("escaped_slashes") { escapedSlashes = try v.choice(EscapedSlashes.self) }
        if let v = map.optional("semicolons") { semicolons = try v.choice(Semicolons.self) }
        if let v = map.optional("case_sensitive") { caseSensitive = try v.bool() }
        try map.finish()
    }
}

extension ConfigNode {
    /// One of a string enum's raw values; the error lists them.
    func choice<Choice: RawRepresentable & CaseIterable>(_ type: Choice.Type) throws -> Choice where Choice.RawValue == String {
        let text = try string()
        guard let value = Choice(rawValue: text) else {
            throw error("expected one of \(Choice.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
        }
        return value
    }
}
