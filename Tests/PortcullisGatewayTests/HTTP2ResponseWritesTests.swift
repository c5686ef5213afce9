@testable import PortcullisGateway
import NIOCore
import Testing

/// The bookkeeping that bounds the writes of a response's body waiting on an HTTP/2 stream.
@Suite("HTTP/2 response writes")
struct HTTP2ResponseWritesTests {
    let allocator = ByteBufferAllocator()

    func bytes(_ count: Int, _ byte: UInt8 = UInt8(ascii: "x")) -> ByteBuffer {
        allocator.buffer(repeating: byte, count: count)
    }

    @Test("the first few small bodies and every large one while nothing is held are written as they come")
    func directWrites() {
        var writes = HTTP2ResponseWrites()
        for _ in 0..<HTTP2ResponseWrites.directSmallBodies {
            #expect(writes.take(bytes(10), allocator: allocator)?.readableBytes == 10)
        }
        #expect(writes.take(bytes(HTTP2ResponseWrites.smallBody), allocator: allocator)?.readableBytes == HTTP2ResponseWrites.smallBody)
        let held = writes.heldToWrite()
        #expect(!writes.holds && held == nil)
    }

    @Test("past them small bodies are joined, in order, into one write; while it waits the rest join the next, and at most one waits")
    func heldAndJoined() throws {
        var writes = HTTP2ResponseWrites()
        for _ in 0..<HTTP2ResponseWrites.directSmallBodies { _ = writes.take(bytes(1), allocator: allocator) }
        #expect(writes.take(bytes(1, UInt8(ascii: "a")), allocator: allocator) == nil)
        #expect(writes.take(bytes(2, UInt8(ascii: "b")), allocator: allocator) == nil)
        let firstWrite = writes.heldToWrite()
        let first = try #require(firstWrite)
        #expect(String(buffer: first) == "abb" && writes.heldWriteWaits)
        #expect(writes.take(bytes(1, UInt8(ascii: "c")), allocator: allocator) == nil)
        let whileWaiting = writes.heldToWrite()
        #expect(whileWaiting == nil, "a second write while the first waits")
        // A large body joins what is held rather than overtake it.
        #expect(writes.take(bytes(2000, UInt8(ascii: "d")), allocator: allocator) == nil)
        writes.heldWritten()
        let secondWrite = writes.heldToWrite()
        let second = try #require(secondWrite)
        #expect(second.readableBytes == 2001 && second.getInteger(at: second.readerIndex, as: UInt8.self) == UInt8(ascii: "c"))
    }

    @Test("held bytes past the limit make the stream count as unwritable; the response's end takes what is held")
    func limitAndDrain() throws {
        var writes = HTTP2ResponseWrites()
        for _ in 0..<HTTP2ResponseWrites.directSmallBodies { _ = writes.take(bytes(1), allocator: allocator) }
        _ = writes.take(bytes(1), allocator: allocator)
        _ = writes.heldToWrite()
        var held = 0
        while !writes.holdsTooMuch {
            #expect(writes.take(bytes(100), allocator: allocator) == nil)
            held += 100
        }
        #expect(held >= HTTP2ResponseWrites.heldLimit && held < HTTP2ResponseWrites.heldLimit + 100)
        let drained = writes.drain()
        #expect(drained?.readableBytes == held)
        let again = writes.drain()
        #expect(!writes.holds && !writes.holdsTooMuch && again == nil)
    }

    @Test("random bodies, writes completing at random: every byte reaches the stream once and in order, at most one joined write waits, and no more than the limit and one body is held")
    func randomised() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var writes = HTTP2ResponseWrites()
            var sent: [UInt8] = [], written: [UInt8] = []
            var waiting: ByteBuffer?
            for step in 0..<Int.random(in: 1...300, using: &generator) {
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<6:
                    // The handler reads the upstream no more while too much is held.
                    if writes.holdsTooMuch { break }
                    let size = Bool.random(using: &generator) ? Int.random(in: 1..<64, using: &generator) : Int.random(in: 1..<3000, using: &generator)
                    let body = allocator.buffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: step &+ $0) })
                    sent += body.readableBytesView
                    if let now = writes.take(body, allocator: allocator) {
                        // A direct write goes behind any joined write already waiting, in order.
                        written += now.readableBytesView
                    }
                case 6..<8:
                    if let held = writes.heldToWrite() {
                        #expect(waiting == nil, "two joined writes waiting")
                        waiting = held
                        written += held.readableBytesView
                    }
                default:
                    if waiting != nil {
                        waiting = nil
                        writes.heldWritten()
                    }
                }
                #expect(writes.heldBytes < HTTP2ResponseWrites.heldLimit + 3000)
            }
            if let rest = writes.drain() { written += rest.readableBytesView }
            #expect(written == sent)
        }
    }
}
