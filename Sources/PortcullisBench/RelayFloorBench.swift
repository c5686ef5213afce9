import ArgumentParser
import NIOCore
import NIOPosix

/// `portcullis-bench relay-floor`: the least work any SwiftNIO reverse proxy can do per request,
/// run as a subject of the peer harness next to the gateway (`cluster/bench/nio-floor.sh`).
///
/// Each client connection gets its own upstream connection on the same event loop, and bytes are
/// copied across unparsed: one read and one write on each side per request, nothing else. It is
/// not a proxy anyone should run (no HTTP, no limits, no backpressure); it answers one question:
/// how much of the gateway's CPU per request is the NIO channel and kernel work that any
/// NIO-based data plane pays on this machine.
struct RelayFloorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-floor",
        abstract: "A byte relay on one event loop: the per-request floor of a SwiftNIO proxy (runs until killed)."
    )

    @Option(help: "Port to listen on, on 127.0.0.1.")
    var listen: Int

    @Option(help: "Backend as host:port.")
    var backend: String

    func run() throws {
        guard let colon = backend.lastIndex(of: ":"), let backendPort = Int(backend[backend.index(after: colon)...]) else {
            throw ValidationError("--backend must be host:port, got '\(backend)'")
        }
        let backendHost = String(backend[..<colon])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // No client byte may arrive before its upstream connection exists to take it.
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                ClientBootstrap(group: client.eventLoop)
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelInitializer { upstream in
                        upstream.eventLoop.makeCompletedFuture { try upstream.pipeline.syncOperations.addHandler(Relay(peer: client)) }
                    }
                    .connect(host: backendHost, port: backendPort)
                    .flatMapThrowing { upstream in
                        try client.pipeline.syncOperations.addHandler(Relay(peer: upstream))
                    }
                    .flatMap { client.setOption(.autoRead, value: true) }
            }
            .bind(host: "127.0.0.1", port: listen)
            .wait()
        try server.closeFuture.wait()
    }
}

/// Writes what one side reads to the other, flushing once per read burst; closes both together.
private final class Relay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let peer: any Channel
    private var unflushed = false

    init(peer: any Channel) {
        self.peer = peer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        peer.write(unwrapInboundIn(data), promise: nil)
        unflushed = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard unflushed else { return }
        unflushed = false
        peer.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
