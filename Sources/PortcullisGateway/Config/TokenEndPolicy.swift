import PortcullisConfig

/// What happens to a long-lived connection or stream (a WebSocket) when the token it was admitted
/// with is revoked or expires (a route's `on_token_end`).
public enum TokenEndPolicy: String, Sendable {
    /// Close it (WebSocket close code 1008).
    case close
    /// Leave it open: the token was checked once, at admission.
    case allow

    static func parse(_ node: ConfigNode) throws -> TokenEndPolicy {
        let text = try node.string()
        guard let policy = TokenEndPolicy(rawValue: text) else { throw node.error("on_token_end must be 'close' or 'allow', got '\(text)'") }
        return policy
    }
}
