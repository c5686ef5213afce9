import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Closes a connection whose client stopped taking its response with a reset (SO_LINGER 0), as
/// nginx's `reset_timedout_connection` does. A plain close leaves what the kernel still holds for
/// the client — up to the socket's send buffer, megabytes — to be sent for as long as the client
/// keeps its window open, a few bytes at a time if it likes: slow readers would each leave up
/// to a send buffer in the gateway's kernel after their connections were cut, memory a cgroup
/// v2 limit counts.
enum AbortiveClose {
    /// Sets SO_LINGER 0 on the connection's socket, where it is one, and closes it.
    static func close(_ context: ChannelHandlerContext) {
        if let socket = context.channel as? any SocketOptionProvider {
            // On the channel's event loop the option is set at once; a failure leaves a plain close.
            _ = socket.setSoLinger(linger(l_onoff: 1, l_linger: 0))
        }
        context.close(promise: nil)
    }
}
