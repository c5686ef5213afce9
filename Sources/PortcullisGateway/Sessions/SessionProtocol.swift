/// What kind of long-lived session `LiveSessions` holds: the `protocol` label of the sessions
/// metrics.
enum SessionProtocol: String, Sendable, CaseIterable {
    /// A WebSocket, over an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT.
    case websocket
    /// A gRPC call to an HTTP/2 upstream.
    case grpc
    /// Any other HTTP/2 stream admitted with a token on a route with `on_token_end: close`.
    case h2
    /// An HTTP/1.1 exchange admitted with a token on a route with `on_token_end: close`, once it
    /// outlasts one read from its upstream (a stream, a long download) or one second (a long poll).
    case http1
}
