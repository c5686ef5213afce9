/// Cluster-level failures with a readable message.
public enum ClusterError: Error, CustomStringConvertible, Sendable {
    case notDurable(String)
    case unexpectedReply(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .notDurable(let why): "not durable: \(why)"
        case .unexpectedReply(let why): "unexpected Redis reply: \(why)"
        case .invalid(let why): why
        }
    }
}
