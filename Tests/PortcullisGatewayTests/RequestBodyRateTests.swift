@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The request-body rate check on an `EmbeddedEventLoop`. Its deadlines come from the real clock,
/// so each test waits a little real time and then runs the loop's timers up to now.
@Suite("request-body rate", .serialized)
struct RequestBodyRateTests {
    /// Counts the reports of a body that is too slow.
    final class Reports {
        var tooSlow = 0
    }

    func rate() -> (RequestBodyRate, Reports, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let reports = Reports()
        let rate = RequestBodyRate(minimumRate: 1000, grace: .milliseconds(100), eventLoop: loop) { reports.tooSlow += 1 }
        return (rate, reports, loop)
    }

    func runTimers(_ loop: EmbeddedEventLoop, after wait: Duration) async throws {
        try await Task.sleep(for: wait)
        loop.advanceTime(to: .now())
    }

    @Test("a body that stops while the gateway waits for it is reported after the grace and the bytes' allowance")
    func starvedBodyReported() async throws {
        let (rate, reports, loop) = rate()
        defer { rate.stop() }
        rate.headReceived()
        rate.bodyReceived(bytes: 50)
        rate.readIssued()
        // Allowance: 100 ms grace + 50 bytes at 1000 B/s = 150 ms of waiting.
        try await runTimers(loop, after: .milliseconds(60))
        #expect(reports.tooSlow == 0)
        try await runTimers(loop, after: .milliseconds(250))
        #expect(reports.tooSlow == 1)
    }

    @Test("a body past 9.2 GB does not overflow its allowance (bytes times 10^9 nanoseconds): it is timed, not trapped on")
    func hugeBodyAllowance() async throws {
        let (rate, reports, loop) = rate()
        defer { rate.stop() }
        rate.headReceived()
        rate.bodyReceived(bytes: 10_000_000_000)
        rate.readIssued()
        try await runTimers(loop, after: .milliseconds(20))
        #expect(reports.tooSlow == 0)
    }

    @Test("time in which reads are held back (backpressure) does not count against the client")
    func heldReadsDoNotCount() async throws {
        let (rate, reports, loop) = rate()
        defer { rate.stop() }
        rate.headReceived()
        // No read issued: the request path is holding reads back.
        try await runTimers(loop, after: .milliseconds(300))
        #expect(reports.tooSlow == 0)
        rate.readIssued()
        try await runTimers(loop, after: .milliseconds(30))
        rate.bodyReceived(bytes: 10)
        rate.endReceived()
        rate.readIssued()
        try await runTimers(loop, after: .milliseconds(300))
        #expect(reports.tooSlow == 0, "a body that ended is never reported")
    }

    @Test("after stop, an expired body is not reported")
    func stoppedReportsNothing() async throws {
        let (rate, reports, loop) = rate()
        rate.headReceived()
        rate.readIssued()
        rate.stop()
        try await runTimers(loop, after: .milliseconds(200))
        #expect(reports.tooSlow == 0)
    }
}
