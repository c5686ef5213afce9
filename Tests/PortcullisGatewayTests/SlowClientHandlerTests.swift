@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The slow-client handlers in an `EmbeddedChannel`. Their deadlines come from the real clock, so
/// each test waits a little real time and then runs the loop's timers up to now.
@Suite("slow-client handlers", .serialized)
struct SlowClientHandlerTests {
    /// Records the `RequestBodyTooSlow` events that reach the end of the pipeline.
    final class EventRecorder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        var tooSlow = 0
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is RequestBodyTooSlow { tooSlow += 1 }
        }
    }

    let head = HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["Host": "h", "Content-Length": "1000"]))

    func channel() throws -> (EmbeddedChannel, EventRecorder) {
        let recorder = EventRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(RequestBodyRateHandler(minimumRate: 1000, grace: .milliseconds(100)))
        try channel.pipeline.syncOperations.addHandler(recorder)
        return (channel, recorder)
    }

    func runTimers(_ channel: EmbeddedChannel, after wait: Duration) async throws {
        try await Task.sleep(for: wait)
        channel.embeddedEventLoop.advanceTime(to: .now())
    }

    @Test("a body that stops while the gateway waits for it is reported after the grace and the bytes' allowance")
    func starvedBodyReported() async throws {
        let (channel, recorder) = try channel()
        try channel.writeInbound(head)
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0, count: 50)))
        channel.read()
        // Allowance: 100 ms grace + 50 bytes at 1000 B/s = 150 ms of waiting.
        try await runTimers(channel, after: .milliseconds(60))
        #expect(recorder.tooSlow == 0)
        try await runTimers(channel, after: .milliseconds(250))
        #expect(recorder.tooSlow == 1)
    }

    @Test("time in which reads are held back (backpressure) does not count against the client")
    func heldReadsDoNotCount() async throws {
        let (channel, recorder) = try channel()
        try channel.writeInbound(head)
        // No read() passes the handler: the request path is holding reads back.
        try await runTimers(channel, after: .milliseconds(300))
        #expect(recorder.tooSlow == 0)
        channel.read()
        try await runTimers(channel, after: .milliseconds(30))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0, count: 10)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.read()
        try await runTimers(channel, after: .milliseconds(300))
        #expect(recorder.tooSlow == 0, "a body that ended is never reported")
    }
}
