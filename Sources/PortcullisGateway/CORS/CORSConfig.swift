import PortcullisConfig

/// A route's `cors:` block: which browser origins may call the route from another origin, and
/// what the gateway answers their preflights with (the Fetch standard's CORS protocol).
public struct CORSConfig: Sendable {
    /// Which `Origin` values are allowed.
    public enum Origins: Sendable, Equatable {
        /// `*`: any origin, answered with `Access-Control-Allow-Origin: *` (never with credentials).
        case any
        /// Exact origins, lower-cased `scheme://host[:port]`.
        case exact(Set<String>)
    }

    public var origins: Origins
    /// Methods a preflight may ask for (upper case, as sent). Default GET, HEAD, POST.
    public var methods: [String]
    /// Request headers a preflight may ask for (lower case); `*` allows any but `Authorization`.
    public var headers: Set<String>
    /// Response headers the browser may show the page (`Access-Control-Expose-Headers`).
    public var exposedHeaders: [String]
    /// `Access-Control-Allow-Credentials: true`: the browser sends cookies and `Authorization`.
    public var credentials: Bool
    /// How long a browser may cache a preflight's answer; nil leaves it to the browser.
    public var maxAgeSeconds: Int?

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        let originsNode = try map.required("allowed_origins")
        let origins = try originsNode.stringList()
        guard !origins.isEmpty else { throw originsNode.error("list at least one origin, or '*'") }
        credentials = try map.optional("allow_credentials")?.bool() ?? false
        if origins.contains("*") {
            guard origins.count == 1 else { throw originsNode.error("'*' allows every origin and cannot be listed with others") }
            // Browsers refuse `*` on a credentialed response; reflecting every origin instead
            // would let any site act with the user's cookies.
            guard !credentials else { throw originsNode.error("'*' cannot be combined with allow_credentials: true; list the allowed origins") }
            self.origins = .any
        } else {
            var set = Set<String>()
            for origin in origins {
                if let problem = Self.problem(origin: origin) { throw originsNode.error("'\(origin)' \(problem)") }
                set.insert(origin.lowercased())
            }
            self.origins = .exact(set)
        }
        if let methodsNode = map.optional("allowed_methods") {
            methods = try methodsNode.stringList().map { $0.uppercased() }
            guard !methods.isEmpty, methods.allSatisfy({ HeaderName.isValid($0) && $0 != "*" }) else {
                throw methodsNode.error("expected a list of HTTP methods")
            }
        } else {
            methods = ["GET", "HEAD", "POST"]
        }
        headers = try Self.names(map.optional("allowed_headers"), credentials: credentials)
        exposedHeaders = try Array(Self.names(map.optional("exposed_headers"), credentials: credentials)).sorted()
        if let v = map.optional("max_age") {
            let seconds = try v.duration().components.seconds
            guard seconds >= 0, seconds <= 86_400 else { throw v.error("max_age must be between 0s and 24h") }
            maxAgeSeconds = Int(seconds)
        }
        try map.finish()
    }

    /// Why `origin` cannot be an allowed origin, nil if it can: a serialized origin is
    /// `scheme://host[:port]`, nothing more (RFC 6454 §6.2).
    static func problem(origin: String) -> String? {
        if origin.lowercased() == "null" {
            return "is the origin of sandboxed documents and local files, which any page can produce; it cannot be allowed"
        }
        guard let separator = origin.range(of: "://") else { return "is not an origin (expected scheme://host[:port])" }
        let scheme = origin[..<separator.lowerBound], authority = origin[separator.upperBound...]
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }) else {
            return "has an invalid scheme"
        }
        guard !authority.isEmpty, !authority.contains(where: { "/?#@*\\ ".contains($0) || !$0.isASCII || $0.isWhitespace }) else {
            return "is not an origin: only scheme://host[:port] without path, wildcard or user (one entry per origin)"
        }
        return nil
    }

    /// A header-name list, lower-cased; `*` only without credentials (with credentials the Fetch
    /// standard reads it as a header literally named `*`).
    private static func names(_ node: ConfigNode?, credentials: Bool) throws -> Set<String> {
        guard let node else { return [] }
        let names = try node.stringList()
        for name in names where !HeaderName.isValid(name) { throw node.error("'\(name)' is not a valid header name") }
        if credentials, names.contains("*") { throw node.error("'*' cannot be combined with allow_credentials: true; list the header names") }
        return Set(names.map { $0.lowercased() })
    }
}
