import ArgumentParser
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// `portcullis-bench websocket-rtt`: opens one WebSocket and sends `--messages` binary messages of
/// `--bytes` one at a time, each after the previous one's echo arrived, and prints the round
/// trips' p50 and p99 in microseconds (`p50_us=… p99_us=…`). The client is a NIO channel handler
/// on one event loop: a message is sent from the read of the last echo, so nothing but the
/// network, the peer and NIO sits between two messages.
struct WebSocketRoundTripBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "websocket-rtt",
        abstract: "WebSocket echo round trips, one message in flight; prints p50 and p99 in µs."
    )

    @Option(help: "Port on 127.0.0.1 to connect to.")
    var port: Int

    @Option(help: "Request path of the upgrade.")
    var path = "/ws"

    @Option(help: "Messages to send (the first tenth is a warm-up, not counted).")
    var messages = 20_000

    @Option(help: "Payload bytes per message.")
    var bytes = 1024

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let done = group.next().makePromise(of: [Double].self)
        let payload = ByteBuffer(repeating: 0x5A, count: bytes)
        let count = messages, path = self.path, port = self.port
        let upgraded = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(RoundTripHandler(payload: payload, count: count, done: done))
                            return true
                        }
                    })
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "127.0.0.1:\(port)")
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                        upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: .init(upgradeConfiguration: configuration))
                }
            }
        guard try await upgraded.get() else { throw ValidationError("the upgrade to WebSocket was refused") }
        let samples = try await done.futureResult.get()
        let counted = Array(samples.dropFirst(samples.count / 10))
        print(String(format: "p50_us=%.1f p99_us=%.1f messages=%d", percentile(counted, 50), percentile(counted, 99), counted.count))
    }

    /// Sends a message, waits for its echo, records the round trip, sends the next.
    final class RoundTripHandler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        private let payload: ByteBuffer
        private let count: Int
        private let done: EventLoopPromise<[Double]>
        private var samples: [Double] = []
        private var sentAt = NIODeadline.now()

        init(payload: ByteBuffer, count: Int, done: EventLoopPromise<[Double]>) {
            self.payload = payload
            self.count = count
            self.done = done
            samples.reserveCapacity(count)
        }

        func handlerAdded(context: ChannelHandlerContext) {
            // The upgrade handler removes the HTTP handlers after this one is added: send once it has.
            context.eventLoop.assumeIsolated().execute { self.send(context: context) }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard unwrapInboundIn(data).opcode == .binary else { return }
            samples.append(Double((NIODeadline.now() - sentAt).nanoseconds) / 1000)
            if samples.count == count {
                done.succeed(samples)
                context.close(promise: nil)
            } else {
                send(context: context)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.fail(ChannelError.eof)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            done.fail(error)
            context.close(promise: nil)
        }

        private func send(context: ChannelHandlerContext) {
            sentAt = .now()
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: payload)), promise: nil)
        }
    }
}
