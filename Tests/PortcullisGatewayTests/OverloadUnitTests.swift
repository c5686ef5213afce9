@testable import PortcullisGateway
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PortcullisObservability
import PortcullisTestSupport
import Prometheus
import Synchronization
import Testing

/// The overload guard's parts on their own: the state, the configuration, one reading of the
/// guard, and the shedding of stalled responses (`EmbeddedChannel`, an embedded loop's clock).
/// `MemoryOverloadTests` runs the whole against a real gateway.
@Suite("overload", .serialized)
struct OverloadUnitTests {
    @Test("the node is overloaded from the limit on, and stays so until the heap is back under nine tenths of it")
    func hysteresis() {
        var state = OverloadState(limit: 1000)
        #expect(state.observe(resident: 999) == nil && !state.isOverloaded)
        #expect(state.observe(resident: 1000) == .entered && state.isOverloaded)
        #expect(state.observe(resident: 5000) == nil)
        #expect(state.observe(resident: 900) == nil && state.isOverloaded)
        #expect(state.observe(resident: 899) == .left && !state.isOverloaded)
        #expect(state.observe(resident: 950) == nil && !state.isOverloaded)
    }

    @Test("the wait a response is allowed is overload.response_write_timeout up to the limit, shrinking linearly to nothing at a quarter over it")
    func waitShrinksAboveTheLimit() {
        let state = OverloadState(limit: 1000)
        #expect(state.waitAllowed(.seconds(2), resident: 950) == .seconds(2))
        #expect(state.waitAllowed(.seconds(2), resident: 1000) == .seconds(2))
        #expect(state.waitAllowed(.seconds(2), resident: 1125) == .seconds(1))
        #expect(state.waitAllowed(.seconds(2), resident: 1250) == .zero)
        #expect(state.waitAllowed(.seconds(2), resident: 5000) == .zero)
    }

    static func overload(_ yaml: String) throws -> OverloadConfig {
        try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\n" + yaml + "\nroutes:\n  - {name: r, path_prefix: /, upstream: {targets: [127.0.0.1:2]}}\n",
                                file: "gateway.yaml").overload
    }

    @Test("overload.memory_limit reads a share, a size or off (default 75 %); its errors name the file, line and key")
    func configuration() throws {
        #expect(try Self.overload("") == OverloadConfig())
        #expect(OverloadConfig().memoryLimit == .share(0.75) && OverloadConfig().responseWriteTimeout == .seconds(2))
        let sized = try Self.overload("overload: {memory_limit: 2GiB, response_write_timeout: 500ms}")
        #expect(sized.memoryLimit == .bytes(2 << 30) && sized.responseWriteTimeout == .milliseconds(500))
        #expect(sized.limitBytes(available: nil) == 2 << 30)
        let share = try Self.overload("overload: {memory_limit: 50%}")
        #expect(share.limitBytes(available: 8_000) == 4_000)
        #expect(share.limitBytes(available: nil) == nil)
        #expect(try Self.overload("overload: {memory_limit: off}").limitBytes(available: 8_000) == nil)
        for (yaml, message) in [
            ("overload:\n  memory_limit: 150%", "gateway.yaml:3:17: overload.memory_limit: expected a share such as 75%"),
            ("overload:\n  memory_limit: lots", "gateway.yaml:3:17: overload.memory_limit: expected off, a share such as 75%, or a size such as 2GiB, got 'lots'"),
            ("overload:\n  memory_limit: 512KiB", "gateway.yaml:3:17: overload.memory_limit: must be at least 1MiB"),
            ("overload:\n  response_write_timeout: 0s", "gateway.yaml:3:27: overload.response_write_timeout: must be more than 0s"),
            ("overload:\n  memory_limt: 1GiB", "memory_limt"),
        ] {
            #expect(throws: (any Error).self) { try Self.overload(yaml) }
            do { _ = try Self.overload(yaml) } catch { #expect("\(error)".contains(message), "\(error)") }
        }
    }

    final class Calls: Sendable {
        let shed = Mutex<[TimeAmount]>([])
        let trims = Mutex(0)
    }

    @Test("a reading at the limit sets the flag and the gauge, sheds and trims; every reading while overloaded sheds, and trims at most once a second; back under nine tenths it clears")
    func guardReadings() async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        let flag = OverloadFlag()
        let calls = Calls()
        let memoryGuard = MemoryGuard(limit: 1000, responseWriteTimeout: .milliseconds(1500), flag: flag, metrics: metrics,
                                      logger: Logger(label: "test"), shed: { waited in
            calls.shed.withLock { $0.append(waited) }
            return 2
        }, trim: { calls.trims.withLock { $0 += 1 } })
        func sample(_ series: String) -> Double? {
            PrometheusText.sample(String(decoding: Exposition.render(registry), as: UTF8.self), series)
        }
        let start = ContinuousClock.now
        var readings = MemoryGuard.Readings(state: OverloadState(limit: 1000))
        #expect(sample("portcullis_memory_limit_bytes") == 1000)
        await memoryGuard.observe(resident: 500, now: start, readings: &readings)
        #expect(!flag.isSet && calls.shed.withLock { $0.isEmpty } && calls.trims.withLock { $0 } == 0)
        #expect(sample("portcullis_memory_resident_bytes") == 500)
        await memoryGuard.observe(resident: 1200, now: start + .milliseconds(250), readings: &readings)
        #expect(flag.isSet && sample("portcullis_overloaded") == 1)
        #expect(calls.trims.withLock { $0 } == 1)
        await memoryGuard.observe(resident: 950, now: start + .milliseconds(500), readings: &readings)
        #expect(calls.shed.withLock { $0 } == [.milliseconds(300), .milliseconds(1500)], "20 % over the limit: a fifth of the wait")
        #expect(calls.trims.withLock { $0 } == 1, "trimmed again within a second")
        await memoryGuard.observe(resident: 950, now: start + .milliseconds(1250), readings: &readings)
        #expect(calls.trims.withLock { $0 } == 2)
        #expect(sample("portcullis_overload_shed_total") == 6)
        await memoryGuard.observe(resident: 800, now: start + .milliseconds(1500), readings: &readings)
        #expect(!flag.isSet && sample("portcullis_overloaded") == 0)
        #expect(calls.shed.withLock { $0.count } == 3 && calls.trims.withLock { $0 } == 2)

        var off = MemoryGuard.Readings(state: nil)
        await memoryGuard.observe(resident: 1 << 40, now: start, readings: &off)
        #expect(!flag.isSet && sample("portcullis_memory_resident_bytes") == Double(1 << 40))
    }

    @Test("the resident set is read from the kernel: it grows by what is touched; trimming gives freed small chunks back")
    func residentReading() {
        let before = NodeMemory.resident()
        let large = UnsafeMutableRawPointer.allocate(byteCount: 64 << 20, alignment: 16)
        large.initializeMemory(as: UInt8.self, repeating: 1, count: 64 << 20)
        let during = NodeMemory.resident()
        large.deallocate()
        #expect(during - before >= 48 << 20, "\(before) → \(during)")
        // Small chunks stay with the allocator when freed (below the top of its heap) until trimmed.
        var small: [UnsafeMutableRawPointer] = []
        for _ in 0..<100_000 {
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: 600, alignment: 16)
            chunk.initializeMemory(as: UInt8.self, repeating: 1, count: 600)
            small.append(chunk)
        }
        let kept = small.removeLast()
        small.forEach { $0.deallocate() }
        let freed = NodeMemory.resident()
        NodeMemory.trim()
        let trimmed = NodeMemory.resident()
        kept.deallocate()
        #expect(freed - trimmed >= 30 << 20, "freed \(freed) → trimmed \(trimmed)")
        #expect((NodeMemory.available() ?? 0) > 64 << 20)
    }

    final class Counter {
        var value = 0
    }

    @Test("shedding cuts an HTTP/1.1 connection whose response has waited as long as asked, counted as a slow client, not one waiting less or not waiting; a closed connection leaves the set")
    func connectionShedding() async throws {
        let set = OverloadSheddingSet()
        let counter = Counter()
        func channel() throws -> EmbeddedChannel {
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(ConnectionTimeoutHandler(
                headReadTimeout: .seconds(30), idleTimeout: .seconds(30), responseWriteTimeout: .seconds(60), shedding: set) { counter.value += 1 })
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            return channel
        }
        let stalledLong = try channel(), stalledShort = try channel(), reading = try channel()
        #expect(set.count == 3)
        stalledLong.isWritable = false
        stalledLong.pipeline.fireChannelWritabilityChanged()
        try await Task.sleep(for: .milliseconds(150))
        stalledShort.isWritable = false
        stalledShort.pipeline.fireChannelWritabilityChanged()
        #expect(set.shed(waitedFor: .milliseconds(100), now: .now()) == 1)
        #expect(!stalledLong.isActive && stalledShort.isActive && reading.isActive)
        #expect(counter.value == 1)
        stalledLong.embeddedEventLoop.run()
        #expect(set.count == 2)
        #expect(set.shed(waitedFor: .milliseconds(100), now: .now()) == 0)
        _ = try? stalledShort.finish()
        _ = try? reading.finish()
        stalledShort.embeddedEventLoop.run()
        reading.embeddedEventLoop.run()
        #expect(set.count == 0)
    }

    final class Stream: HTTP2StreamDeadlineOwner {
        var kinds: [HTTP2StreamDeadlines.Kind] = []
        func deadlinePassed(_ kind: HTTP2StreamDeadlines.Kind) { kinds.append(kind) }
    }

    @Test("shedding passes the response-write deadlines of HTTP/2 streams waiting as long as asked, and no other kind, and no shorter wait")
    func streamShedding() {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        let waitedLong = Stream(), waitedShort = Stream(), otherKind = Stream()
        deadlines.arm(waitedLong, .responseWrite, after: .seconds(60))
        deadlines.arm(waitedLong, .responseHeader, after: .seconds(30))
        deadlines.arm(otherKind, .requestBody, after: .seconds(1))
        loop.advanceTime(by: .milliseconds(900))
        deadlines.arm(waitedShort, .responseWrite, after: .seconds(60))
        loop.advanceTime(by: .milliseconds(200))
        // Waited 1.1 s and 0.2 s: those waiting 1 s or more pass.
        #expect(deadlines.expire(.responseWrite, waitedFor: .seconds(1), timeout: .seconds(60), now: loop.now) == 1)
        #expect(waitedLong.kinds == [.responseWrite] && waitedShort.kinds.isEmpty)
        #expect(otherKind.kinds == [.requestBody], "its own deadline passed at its time, not by shedding")
        #expect(deadlines.count == 2, "the long waiter keeps its response-header deadline")
        loop.advanceTime(by: .seconds(60))
        #expect(waitedLong.kinds == [.responseWrite, .responseHeader])
        #expect(waitedShort.kinds == [.responseWrite])
    }
}
