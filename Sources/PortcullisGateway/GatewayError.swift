/// Errors that stop a gateway from starting or reloading.
public enum GatewayError: Error, CustomStringConvertible {
    case tls(String)
    case bind(String)
    case keys(String)
    case tracing(String)

    public var description: String {
        switch self {
        case .tls(let why): "TLS: \(why)"
        case .bind(let why): "cannot listen: \(why)"
        case .keys(let why): "key sets: \(why)"
        case .tracing(let why): "tracing: \(why)"
        }
    }
}
