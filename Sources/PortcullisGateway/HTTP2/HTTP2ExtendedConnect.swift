/// A stream's request is an extended CONNECT (RFC 8441 §4): its HEADERS carry `:protocol`, which
/// NIO's HTTP/2-to-HTTP/1 codec drops from the head it makes. `HTTP2HeaderBlocks` sends
/// this as a user inbound event just before the head, and `HTTP2StreamHandler` reads the
/// protocol from it. swift-nio-http2 accepts `:protocol` only while the gateway's SETTINGS
/// enable it (`http2.extended_connect`).
struct HTTP2ExtendedConnect: Sendable {
    /// The `:protocol` value, as sent.
    let protocolName: String
}
