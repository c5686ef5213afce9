import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension RedisError {
    /// The message without the category prefix of `description`, for composing messages.
    var message: String {
        switch self {
        case .connectionRefused(let message), .connectionClosed(let message), .timeout(let message),
             .errorReply(let message), .protocolError(let message), .invalidURL(let message), .sentinel(let message),
             .tls(let message), .authentication(let message):
            message
        case .clientClosed: "the client was closed"
        }
    }

    /// Maps a failure to open a connection to `address`.
    static func connecting(_ error: any Error, address: String) -> RedisError {
        switch error {
        case let error as RedisError:
            return error
        case ChannelError.connectTimeout(let amount):
            return .timeout("\(address): connect timed out after \(formatDuration(amount))")
        case let error as NIOConnectionError:
            if let dnsError = error.dnsAError ?? error.dnsAAAAError {
                return .connectionRefused("\(address): cannot resolve host (\(dnsError))")
            }
            let causes = error.connectionErrors.map(\.error)
            if causes.contains(where: { ($0 as? IOError)?.errnoCode == ECONNREFUSED }) {
                return .connectionRefused("\(address): connection refused")
            }
            return .connectionRefused("\(address): connection failed (\(causes.map { "\($0)" }.joined(separator: "; ")))")
        case let error as IOError where error.errnoCode == ECONNREFUSED:
            return .connectionRefused("\(address): connection refused")
        case let error as IOError where error.errnoCode == ENOENT:
            return .connectionRefused("\(address): no such socket")
        default:
            return .connectionRefused("\(address): connection failed (\(error))")
        }
    }

    /// Maps a failure on an established connection to `address`.
    static func afterConnect(_ error: any Error, address: String) -> RedisError {
        switch error {
        case let error as RedisError:
            return error
        case let error as NIOSSLError:
            return .tls("\(address): TLS handshake failed: \(error)")
        case let error as NIOSSLExtraError:
            return .tls("\(address): TLS handshake failed: \(error)")
        case let error as IOError where error.errnoCode == ECONNRESET:
            return .connectionClosed("\(address): connection reset by peer")
        case ChannelError.ioOnClosedChannel, ChannelError.alreadyClosed, ChannelError.eof:
            return .connectionClosed("\(address): connection closed")
        case EventLoopError.shutdown:
            return .clientClosed
        default:
            return .connectionClosed("\(address): \(error)")
        }
    }
}

/// "200 ms", "2 s", "1.5 s".
func formatDuration(_ amount: TimeAmount) -> String {
    let milliseconds = Double(amount.nanoseconds) / 1_000_000
    if milliseconds < 1000 { return "\(Int(milliseconds.rounded())) ms" }
    let seconds = milliseconds / 1000
    return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
}

func formatDuration(_ duration: Duration) -> String {
    formatDuration(TimeAmount(duration))
}
