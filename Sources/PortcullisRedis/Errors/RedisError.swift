/// Everything the Redis client throws. Messages name the server (`host:port` or socket path) where one is involved.
public enum RedisError: Error, Sendable, CustomStringConvertible {
    /// The server could not be reached, e.g. "127.0.0.1:6390: connection refused".
    case connectionRefused(String)
    /// The connection closed (or was closed after a failure) before the reply arrived.
    case connectionClosed(String)
    /// No connection or no reply within the configured timeout.
    case timeout(String)
    /// Redis answered with an error; the full message, e.g. "NOSCRIPT No matching script".
    case errorReply(String)
    /// The bytes from the server are not valid RESP, or a reply came that nobody asked for.
    case protocolError(String)
    /// A Redis URL could not be parsed; the message says what is wrong (passwords are never echoed).
    case invalidURL(String)
    /// No Sentinel could name a reachable master, or the named server is not a master.
    case sentinel(String)
    /// TLS could not be set up or the handshake failed (certificate not trusted, wrong name,
    /// protocol version), e.g. "redis-1:6380: TLS handshake failed: …".
    case tls(String)
    /// The server refused `AUTH` (wrong user or password), or a command needs authentication.
    case authentication(String)
    /// The client or subscriber was closed.
    case clientClosed

    /// A short label for metrics: refused, closed, timeout, error_reply, protocol, url, sentinel,
    /// tls, auth, client_closed.
    public var kind: String {
        switch self {
        case .connectionRefused: "refused"
        case .connectionClosed: "closed"
        case .timeout: "timeout"
        case .errorReply: "error_reply"
        case .protocolError: "protocol"
        case .invalidURL: "url"
        case .sentinel: "sentinel"
        case .tls: "tls"
        case .authentication: "auth"
        case .clientClosed: "client_closed"
        }
    }

    /// The first word of an error reply ("NOSCRIPT", "WRONGTYPE", "READONLY", …); nil for other cases.
    public var errorCode: String? {
        guard case .errorReply(let message) = self else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    /// The message, prefixed with what failed, e.g. "Redis timeout: …".
    public var description: String {
        switch self {
        case .connectionRefused(let message): "Redis connection failed: \(message)"
        case .connectionClosed(let message): "Redis connection closed: \(message)"
        case .timeout(let message): "Redis timeout: \(message)"
        case .errorReply(let message): "Redis error reply: \(message)"
        case .protocolError(let message): "Redis protocol error: \(message)"
        case .invalidURL(let message): "invalid Redis URL: \(message)"
        case .sentinel(let message): "Redis Sentinel: \(message)"
        case .tls(let message): "Redis TLS: \(message)"
        case .authentication(let message): "Redis authentication: \(message)"
        case .clientClosed: "the Redis client was closed"
        }
    }
}
