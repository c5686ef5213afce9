import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing
@testable import PortcullisGateway

struct ResendableBodyUnitTests {
    @Test("a body is kept part by part, in order, up to 64 KiB; one byte past, and nothing is kept any more, also of what follows")
    func keptUpToTheLimit() {
        var body = ResendableBody()
        #expect(body.parts == [])
        let half = ByteBuffer(repeating: 1, count: ResendableBody.limit / 2)
        body.sent(half)
        body.sent(ByteBuffer(repeating: 2, count: ResendableBody.limit / 2))
        #expect(body.parts?.count == 2 && body.parts?.first == half)
        body.sent(ByteBuffer(repeating: 3, count: 1))
        #expect(body.parts == nil)
        body.sent(ByteBuffer(repeating: 4, count: 1))
        #expect(body.parts == nil)
    }

    @Test("a small slice of a large buffer is kept as a copy of its bytes, not holding on to the buffer; a part filling its buffer is kept as it is")
    func slicesAreCopied() {
        var body = ResendableBody()
        let read = ByteBuffer(repeating: 7, count: ResendableBody.limit)
        body.sent(read.getSlice(at: 0, length: 100)!)
        body.sent(read)
        #expect(body.parts?.count == nil, "64 KiB and 100 bytes are past the limit")
        var small = ResendableBody()
        small.sent(read.getSlice(at: 0, length: 100)!)
        #expect(small.parts?.first?.readableBytes == 100 && small.parts!.first!.storageCapacity < 1024)
        let whole = ByteBuffer(repeating: 1, count: 1000)
        small.sent(whole)
        #expect(small.parts?.last?.storageCapacity == whole.storageCapacity)
    }

    @Test("a released body keeps nothing, also of what is sent afterwards")
    func releasedKeepsNothing() {
        var body = ResendableBody()
        body.sent(ByteBuffer(string: "a"))
        body.release()
        body.sent(ByteBuffer(string: "b"))
        #expect(body.parts == nil)
    }

    @Test("a stream to an upstream closed with REFUSED_STREAM was refused unprocessed; one closed with another code, on a connection without GOAWAY, or failing otherwise, may have been processed")
    func refusals() {
        let stream = EmbeddedChannel()
        #expect(HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .refusedStream), on: stream))
        #expect(!HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel), on: stream))
        #expect(!HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .internalError), on: stream))
        #expect(!HTTP2StreamRefusal.refused(ChannelError.ioOnClosedChannel, on: stream))
    }
}
