@testable import PortcullisGateway
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import PortcullisTestSupport
import Testing

/// `ClientProgress`: the bytes a client's TCP stack acknowledged, read from the kernel on real
/// loopback connections, and the overload guard's shedding of HTTP/1.1 connections by them — a
/// server writing without end to real clients (`Scripts/paced_reader.py`), one reading steadily,
/// one reading nothing, shed as `MemoryGuard` sheds while the node is overloaded — and of HTTP/2
/// streams, by them and by the client's windows (`Scripts/h2_paced_reader.py`).
@Suite("client progress", .serialized)
struct ClientProgressTests {
    static let readerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/paced_reader.py").path
    static let h2ReaderScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/h2_paced_reader.py").path

    @Test("a sighting of progress needs what the gateway held for the client at the last one acknowledged since, and at least 32 KiB; the first reading is the baseline")
    func progressNeedsWhatWasHeld() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var progress = ClientProgress(.init(acknowledged: 10_000, held: 1_000), at: start)
        progress.observe(.init(acknowledged: 10_000 + 32_767, held: 0), at: start + .seconds(1))
        #expect(progress.progressedAt == start, "under 32 KiB")
        progress.observe(.init(acknowledged: 10_000 + 32_768, held: 200_000), at: start + .seconds(2))
        #expect(progress.progressedAt == start + .seconds(2))
        progress.observe(.init(acknowledged: 10_000 + 32_768 + 199_999, held: 0), at: start + .seconds(3))
        #expect(progress.progressedAt == start + .seconds(2), "short of the 200 000 bytes held at the last sighting")
        progress.observe(.init(acknowledged: 10_000 + 32_768 + 200_000, held: 0), at: start + .seconds(4))
        #expect(progress.progressedAt == start + .seconds(4))
    }

    @Test("the bytes a client has read are read back from the kernel as acknowledged (TCP_INFO); a channel that is no socket gives none")
    func acknowledgedBytesComeFromTheKernel() async throws {
        #expect(ClientProgress.reading(of: EmbeddedChannel()) == nil)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let accepted = NIOLockedValueBox<(any Channel)?>(nil)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 = channel }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WriteOnce(ByteBuffer(repeating: 7, count: 100_000)))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        // It reads all within its first second and keeps the connection open for three.
        let reader = try ManagedProcess(executable: "/usr/bin/env",
                                        arguments: ["python3", Self.readerScript, String(server.localAddress!.port!), "1000000", "3"])
        var reading: ClientProgress.Reading?
        _ = try await Poll.until(timeout: .seconds(10)) {
            guard let channel = accepted.withLockedValue({ $0 }) else { return false }
            reading = try await channel.eventLoop.submit { ClientProgress.reading(of: channel) }.get()
            return (reading?.acknowledged ?? 0) >= 100_000
        }
        // The handshake's SYN may be counted with the data; nothing is left unsent.
        #expect(reading.map { (100_000...100_001).contains($0.acknowledged) && $0.held == 0 } == true, "\(String(describing: reading))")
        #expect(await reader.waitForExit(timeout: .seconds(10)) == 0)
        #expect(reader.output.contains(#""received": 100000"#), "\(reader.output)")
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// Writes `bytes` once the connection is up.
    final class WriteOnce: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let bytes: ByteBuffer

        init(_ bytes: ByteBuffer) {
            self.bytes = bytes
        }

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
            context.fireChannelActive()
        }
    }

    /// Writes without end, as fast as the channel takes it.
    final class EndlessWriter: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let chunk = ByteBuffer(repeating: 1, count: 64 << 10)

        func channelActive(context: ChannelHandlerContext) {
            write(context: context)
            context.fireChannelActive()
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            write(context: context)
            context.fireChannelWritabilityChanged()
        }

        private func write(context: ChannelHandlerContext) {
            while context.channel.isActive, context.channel.isWritable {
                context.writeAndFlush(wrapOutboundOut(chunk), promise: nil)
            }
        }
    }

    /// The build before cut the steady reader: its channel stays unwritable between the kernel's
    /// wake-ups, seconds apart behind a send buffer of megabytes. A rule of a fixed few KiB
    /// acknowledged per wait spared the trickling reader (an attacker review kept a node
    /// overloaded with 300 of them); a plain close left the stalled reader's bytes in the kernel.
    @Test("while the node is overloaded (shed every 250 ms, 1 s allowed), a client reading its response steadily at 240 KB/s behind a large send buffer is not cut; one trickling 40 KB/s through a small receive buffer (less than the gateway holds for it per wait) is, and one reading nothing is, with a reset, within about twice the allowed wait")
    func steadyReaderIsNotShed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let set = try await loop.submit { NIOLoopBound(OverloadSheddingSet(), eventLoop: loop) }.get()
        // Per listening port: when its connection was accepted and when it closed.
        let acceptedAt = NIOLockedValueBox<[Int: ContinuousClock.Instant]>([:])
        let closedAt = NIOLockedValueBox<[Int: ContinuousClock.Instant]>([:])
        func listen() async throws -> any Channel {
            try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ConnectionTimeoutHandler(headReadTimeout: .seconds(60), idleTimeout: .seconds(60), responseWriteTimeout: .seconds(60),
                                                     shedding: set.value) {},
                            EndlessWriter(),
                        ])
                        let port = channel.localAddress!.port!
                        acceptedAt.withLockedValue { $0[port] = .now }
                        channel.closeFuture.whenComplete { _ in
                            closedAt.withLockedValue { $0[port] = .now }
                        }
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
        }
        let steadyServer = try await listen(), trickleServer = try await listen(), stalledServer = try await listen()
        let steadyPort = steadyServer.localAddress!.port!, tricklePort = trickleServer.localAddress!.port!
        let stalledPort = stalledServer.localAddress!.port!
        let shedding = loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            _ = set.value.shed(waitedFor: .seconds(1), now: .now())
        }
        let steady = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.readerScript, String(steadyPort), "240000", "8"])
        let trickle = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.readerScript, String(tricklePort), "40000", "8", "4096"])
        let stalled = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.readerScript, String(stalledPort), "0", "8"])
        #expect(await steady.waitForExit(timeout: .seconds(20)) == 0)
        #expect(await trickle.waitForExit(timeout: .seconds(20)) == 0)
        #expect(await stalled.waitForExit(timeout: .seconds(20)) == 0)
        shedding.cancel()
        // Seconds from each connection's accepting to its closing (nil: still open).
        let accepted = acceptedAt.withLockedValue { $0 }, closedTimes = closedAt.withLockedValue { $0 }
        var closed: [Int: Double] = [:]
        for (port, end) in closedTimes {
            if let begin = accepted[port] { closed[port] = (end - begin) / .seconds(1) }
        }
        let seen = try JSONSerialization.jsonObject(with: Data(steady.output.utf8)) as? [String: Any] ?? [:]
        // Closed only once the reader left, 8 s after it began (it would not see a cut before
        // then: megabytes wait in its receive buffer).
        #expect((closed[steadyPort] ?? 8) >= 7.9, "the steady reader was cut at \(closed[steadyPort] ?? 0) s: \(steady.output)")
        #expect(seen["closed_at"] is NSNull, "\(steady.output)")
        #expect((seen["received"] as? Int ?? 0) > 240_000 * 5, "\(steady.output)")
        let trickleCut = try #require(closed[tricklePort], "the trickling reader was not cut: \(trickle.output)")
        #expect(trickleCut < 5, "cut \(trickleCut) s after it was accepted")
        let stalledCut = try #require(closed[stalledPort], "the reader that reads nothing was not cut")
        #expect(stalledCut < 3, "cut \(stalledCut) s after it was accepted")
        #expect(stalled.output.contains(#""reset": true"#), "the cut was no reset: \(stalled.output)")
        try await trickleServer.close()
        try await steadyServer.close()
        try await stalledServer.close()
        try await group.shutdownGracefully()
    }

    /// The build before cut every HTTP/2 stream that waited on its connection for the allowed
    /// wait, though the client was taking what its connection carried: the streams of a steady
    /// reader behind megabytes of socket buffer wait, all of them, between the kernel's wake-ups.
    @Test("while the node is overloaded (shed every 250 ms, 1 s allowed), an HTTP/2 client reading its 4 streams steadily at 240 KB/s with its windows open has none cut; a client keeping one stream's window shut while it reads another has that stream cut and not the other; one reading nothing is cut")
    func steadyHTTP2ReaderIsNotShed() async throws {
        let upstream = try await TestUpstream.start()
        let fixture = try InProcessGateway(yaml: """
            routes:
              - {name: bytes, path_prefix: /bytes, methods: [GET], upstream: {targets: ['\(upstream.address)']}}
            """)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // One gateway per client, so that each one's cuts are its own.
        var servers: [GatewayServer] = []
        var ports: [Int] = []
        for _ in 0..<3 {
            let server = try await GatewayServer(group: group, context: fixture.context, limits: ServerLimits(), http2: HTTP2Config(), tls: nil,
                                                 logger: Logger(label: "test"))
            ports.append(try await server.start(host: "127.0.0.1", port: 0).port!)
            servers.append(server)
        }
        let cuts = NIOLockedValueBox<[Int]>([0, 0, 0])
        let begin = ContinuousClock.now
        let firstCut = NIOLockedValueBox<[Double?]>([nil, nil, nil])
        let shedding = Task { [servers] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                for (index, server) in servers.enumerated() {
                    let cut = await server.shedStalledResponses(waitedFor: .seconds(1))
                    guard cut > 0 else { continue }
                    cuts.withLockedValue { $0[index] += cut }
                    firstCut.withLockedValue { $0[index] = $0[index] ?? (ContinuousClock.now - begin) / .seconds(1) }
                }
            }
        }
        let path = "/bytes/16000000"
        let steady = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.h2ReaderScript, String(ports[0]), path, "4", "240000", "8"])
        let shut = try ManagedProcess(executable: "/usr/bin/env",
                                      arguments: ["python3", Self.h2ReaderScript, String(ports[1]), path, "2", "320000", "8", "shut-first"])
        let stalled = try ManagedProcess(executable: "/usr/bin/env", arguments: ["python3", Self.h2ReaderScript, String(ports[2]), path, "4", "0", "8"])
        #expect(await steady.waitForExit(timeout: .seconds(20)) == 0)
        #expect(await shut.waitForExit(timeout: .seconds(20)) == 0)
        #expect(await stalled.waitForExit(timeout: .seconds(20)) == 0)
        shedding.cancel()
        _ = await shedding.value
        let (cut, first) = (cuts.withLockedValue { $0 }, firstCut.withLockedValue { $0 })
        let seen = try JSONSerialization.jsonObject(with: Data(steady.output.utf8)) as? [String: Any] ?? [:]
        #expect(cut[0] == 0, "the steady reader had \(cut[0]) streams cut, the first at \(first[0] ?? 0) s: \(steady.output)")
        #expect(((seen["received"] as? [Int]) ?? []).reduce(0, +) > 240_000 * 5, "\(steady.output)")
        #expect((seen["resets"] as? [String: Int]) == [:], "\(steady.output)")
        // The shut stream is cut; the one read beside it goes on to the end of the run.
        let shutSeen = try JSONSerialization.jsonObject(with: Data(shut.output.utf8)) as? [String: Any] ?? [:]
        #expect(cut[1] == 1, "\(cut[1]) streams cut: \(shut.output)")
        #expect((first[1] ?? 99) < 5, "cut at \(first[1] ?? 0) s")
        #expect(((shutSeen["received"] as? [Int]) ?? []).last ?? 0 > 320_000 * 5, "\(shut.output)")
        // Its streams, and its connection by the connection's own deadline (`ConnectionTimeoutHandler`).
        #expect(cut[2] >= 1 && servers[2].connectionCount == 0, "\(cut[2]) cut, \(servers[2].connectionCount) connections left")
        #expect((first[2] ?? 99) < 4, "cut at \(first[2] ?? 0) s")
        for server in servers { _ = await server.drain(deadline: .milliseconds(200)) }
        try await group.shutdownGracefully()
        await upstream.stop()
    }
}
