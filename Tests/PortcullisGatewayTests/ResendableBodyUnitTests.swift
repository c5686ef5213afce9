import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing
@testable import PortcullisGateway

struct ResendableBodyUnitTests {
    @Test("a body is kept, in order, as one copy, up to 16 KiB; one byte past, and nothing is kept any more, also of what follows")
    func keptUpToTheLimit() {
        var body = ResendableBody()
        #expect(body.canResend && body.kept == nil)
        body.sent(ByteBuffer(repeating: 1, count: ResendableBody.limit / 2))
        body.sent(ByteBuffer(repeating: 2, count: ResendableBody.limit / 2))
        #expect(body.canResend)
        #expect(body.kept.map { Array($0.readableBytesView) } == Array(repeating: 1, count: ResendableBody.limit / 2) + Array(repeating: 2, count: ResendableBody.limit / 2))
        body.sent(ByteBuffer(repeating: 3, count: 1))
        #expect(!body.canResend && body.kept == nil)
        body.sent(ByteBuffer(repeating: 4, count: 1))
        #expect(!body.canResend && body.kept == nil)
    }

    @Test("a small slice of a large buffer is kept as a copy of its bytes, not holding on to the buffer")
    func slicesAreCopied() {
        var body = ResendableBody()
        let read = ByteBuffer(repeating: 7, count: 65_536)
        body.sent(read.getSlice(at: 0, length: 100)!)
        #expect(body.kept?.readableBytes == 100 && body.kept!.storageCapacity < 1_024)
    }

    @Test("a released body keeps nothing, also of what is sent afterwards")
    func releasedKeepsNothing() {
        var body = ResendableBody()
        body.sent(ByteBuffer(string: "a"))
        body.release()
        body.sent(ByteBuffer(string: "b"))
        #expect(!body.canResend && body.kept == nil)
    }

    @Test("a stream to an upstream closed with REFUSED_STREAM was refused unprocessed; one closed with another code, on a connection without GOAWAY, or failing otherwise, may have been processed")
    func refusals() {
        let stream = EmbeddedChannel()
        #expect(HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .refusedStream), on: stream))
        #expect(!HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel), on: stream))
        #expect(!HTTP2StreamRefusal.refused(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .internalError), on: stream))
        #expect(!HTTP2StreamRefusal.refused(ChannelError.ioOnClosedChannel, on: stream))
    }

    @Test("a HEADERS write dropped with its stream, or refused after the upstream's GOAWAY, never left the gateway; one failing with an I/O error (over TLS, the whole flush's) may have")
    func unsentHeaders() {
        #expect(HTTP2StreamRefusal.headersUnsent(NIOHTTP2Errors.streamClosed(streamID: 3, errorCode: .cancel)))
        #expect(HTTP2StreamRefusal.headersUnsent(NIOHTTP2Errors.createdStreamAfterGoaway()))
        #expect(HTTP2StreamRefusal.headersUnsent(NIOHTTP2Errors.streamError(streamID: 3, baseError: NIOHTTP2Errors.createdStreamAfterGoaway())))
        #expect(!HTTP2StreamRefusal.headersUnsent(ChannelError.ioOnClosedChannel))
        #expect(!HTTP2StreamRefusal.headersUnsent(IOError(errnoCode: 32, reason: "writev")))
    }
}
