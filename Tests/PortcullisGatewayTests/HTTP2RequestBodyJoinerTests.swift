@testable import PortcullisGateway
import NIOCore
import Testing

/// Joining the request-body parts of one read of an HTTP/2 stream into one write.
@Suite("HTTP/2 request-body joiner")
struct HTTP2RequestBodyJoinerTests {
    let allocator = ByteBufferAllocator()

    @Test("a read's parts come out as one buffer at its end; a lone part comes out as it went in")
    func joinsARead() throws {
        var joiner = HTTP2RequestBodyJoiner()
        #expect(joiner.add(allocator.buffer(string: "ab")) == nil)
        #expect(joiner.add(allocator.buffer(string: "c")) == nil)
        let joined = joiner.take()
        #expect(joined.map { String(buffer: $0) } == "abc" && joiner.isEmpty && joiner.take() == nil)
        let lone = allocator.buffer(string: "lone")
        #expect(joiner.add(lone) == nil)
        #expect(joiner.take() == lone)
    }

    @Test("random parts and read ends: every byte comes out once and in order; what comes out before a read ends is at least flushAt bytes and under flushAt plus one part")
    func randomised() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            var joiner = HTTP2RequestBodyJoiner()
            var sent: [UInt8] = [], out: [UInt8] = []
            for step in 0..<Int.random(in: 1...200, using: &generator) {
                if Int.random(in: 0..<8, using: &generator) == 0 {
                    if let rest = joiner.take() { out += rest.readableBytesView }
                    continue
                }
                let size = Bool.random(using: &generator) ? 1 : Int.random(in: 1...16_384, using: &generator)
                // Each part's bytes name it, so order shows.
                let part = allocator.buffer(repeating: UInt8(truncatingIfNeeded: step), count: size)
                sent += part.readableBytesView
                if let full = joiner.add(part) {
                    #expect(full.readableBytes >= HTTP2RequestBodyJoiner.flushAt && full.readableBytes < HTTP2RequestBodyJoiner.flushAt + 16_384)
                    out += full.readableBytesView
                }
            }
            if let rest = joiner.take() { out += rest.readableBytesView }
            #expect(out == sent)
        }
    }
}
