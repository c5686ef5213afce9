import ArgumentParser
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// `portcullis-bench websocket-echo`: a WebSocket echo server on one event loop, the upstream of
/// `cluster/bench/websocket.sh`. Every data frame comes back as one frame with the same opcode
/// and payload; nothing else is done, so the round trips the bench measures are the network's,
/// the proxy's and NIO's, not an interpreter's.
struct WebSocketEchoBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "websocket-echo",
        abstract: "A WebSocket echo server on 127.0.0.1 (runs until killed)."
    )

    @Option(help: "Port to listen on, on 127.0.0.1.")
    var listen: Int

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketServerUpgrader<Void>(
                        shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
                        })
                    let configuration = NIOTypedHTTPServerUpgradeConfiguration<Void>(
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.close(promise: nil)
                            return channel.eventLoop.makeSucceededVoidFuture()
                        })
                    _ = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                        configuration: .init(upgradeConfiguration: configuration))
                }
            }
            .bind(host: "127.0.0.1", port: listen).wait()
        print("listening on 127.0.0.1:\(listen)")
        try channel.closeFuture.wait()
    }

    /// Echoes data frames, answers pings and closes.
    final class EchoHandler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .binary, .text:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
            case .ping:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            case .connectionClose:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                    .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            default:
                break
            }
        }
    }
}
