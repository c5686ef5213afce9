/// Errors that stop a gateway from starting or reloading.
public enum GatewayError: Error, CustomStringConvertible {
    case tls(String)
    case bind(String)
    case keys(String)
    case tracing(String)

    /// True for a file the configuration names that cannot be used (a certificate, a key set):
    /// the configuration's fault, like a parse error, rather than the machine's.
    public var isConfiguration: Bool {
        switch self {
        case .tls, .keys, .tracing: true
        case .bind: false
        }
    }

    public var description: String {
        switch self {
        case .tls(let why): "TLS: \(why)"
        case .bind(let why): "cannot listen: \(why)"
        case .keys(let why): "key sets: \(why)"
        case .tracing(let why): "tracing: \(why)"
        }
    }
}
