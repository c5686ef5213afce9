import NIOCore
import NIOHTTP1
import PortcullisConfig

/// Why an exchange with an upstream failed.
enum UpstreamError: Error, CustomStringConvertible {
    case connectFailed(String)
    case connectTimeout
    case closedBeforeResponse
    case closedMidResponse
    /// The upstream refused the stream unprocessed (HTTP/2), and it could not be sent again
    /// (`HTTP2StreamRefusal`).
    case refusedStream
    case responseHeaderTimeout
    case idleTimeout
    case protocolError(String)
    case tls(String)
    /// The gateway's own bound: every HTTP/2 connection to the target it may hold is on its way
    /// out, and as many streams wait for one to close as may (`HTTP2UpstreamPool`). Not the
    /// target's fault: it is not ejected.
    case poolFull(String)

    var description: String {
        switch self {
        case .connectFailed(let why): "connect failed: \(why)"
        case .connectTimeout: "connect timed out"
        case .closedBeforeResponse: "upstream closed the connection before responding"
        case .closedMidResponse: "upstream closed the connection mid-response"
        case .refusedStream: "upstream refused the stream without processing it"
        case .responseHeaderTimeout: "upstream did not send a response head in time"
        case .idleTimeout: "upstream connection idle too long"
        case .protocolError(let why): "invalid response from upstream: \(why)"
        case .tls(let why): "TLS to upstream failed: \(why)"
        case .poolFull(let why): "no connection to the upstream to spare: \(why)"
        }
    }

    /// 504 for timeouts, 502 for everything else.
    var isTimeout: Bool {
        switch self {
        case .connectTimeout, .responseHeaderTimeout, .idleTimeout: true
        default: false
        }
    }

    /// What a client is answered when this failure ends its request before a response began.
    var clientAnswer: (status: HTTPResponseStatus, error: String, description: String) {
        if case .poolFull = self { return (.serviceUnavailable, "upstream_busy", "the gateway's connections to the upstream are all closing; retry shortly") }
        return isTimeout ? (.gatewayTimeout, "upstream_timeout", "the upstream did not answer in time")
            : (.badGateway, "bad_gateway", "the upstream is unavailable")
    }

    /// A connect to `address` that failed with `error`.
    static func connecting(to address: HostPort, _ error: any Error) -> UpstreamError {
        if case ChannelError.connectTimeout = error { return .connectTimeout }
        return .connectFailed("\(address): \(error)")
    }

    /// A metric label.
    var kind: String {
        switch self {
        case .connectFailed: "connect_failed"
        case .connectTimeout: "connect_timeout"
        case .closedBeforeResponse: "closed_before_response"
        case .closedMidResponse: "closed_mid_response"
        case .refusedStream: "refused_stream"
        case .responseHeaderTimeout: "response_header_timeout"
        case .idleTimeout: "idle_timeout"
        case .protocolError: "protocol_error"
        case .tls: "tls"
        case .poolFull: "pool_full"
        }
    }
}
