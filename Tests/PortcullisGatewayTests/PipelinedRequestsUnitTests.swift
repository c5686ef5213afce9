@testable import PortcullisGateway
import NIOCore
import NIOHTTP1
import Testing

@Suite("HTTP/1.1 pipelining: requests queued behind the one being answered")
struct PipelinedRequestsUnitTests {
    static func head(_ uri: String) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri))
    }

    /// A short name per item, to compare sequences.
    static func name(_ item: PipelinedRequests.Item) -> String {
        switch item {
        case .part(.head(let head)): "head \(head.uri)"
        case .part(.body): "body"
        case .part(.end): "end"
        case .malformedRequest: "malformed request"
        case .malformedBody: "malformed body"
        }
    }

    @Test("a queued request's parts come out in order, but its head only when the connection may begin a request; the parts after a head follow it")
    func headsWaitForTheirTurn() {
        var queue = PipelinedRequests()
        queue.append(Self.head("/a"))
        queue.append(.body(ByteBuffer(string: "x")))
        queue.append(.end(nil))
        queue.append(Self.head("/b"))
        let early = queue.next(mayBeginRequest: false)
        #expect(early == nil)
        var taken: [String] = []
        taken.append(Self.name(queue.next(mayBeginRequest: true)!))
        while let item = queue.next(mayBeginRequest: false) { taken.append(Self.name(item)) }
        #expect(taken == ["head /a", "body", "end"])
        #expect(!queue.isEmpty)
        let second = queue.next(mayBeginRequest: true)
        #expect(second.map(Self.name) == "head /b")
        #expect(queue.isEmpty)
    }

    @Test("bytes the decoder refused take their turn: as a request of their own after a complete one, as the broken body of an incomplete one; with nothing queued the caller places them")
    func refusalsTakeTheirTurn() {
        var empty = PipelinedRequests()
        let placed = empty.decoderRefused()
        #expect(!placed && empty.isEmpty)

        var afterComplete = PipelinedRequests()
        afterComplete.append(Self.head("/a"))
        afterComplete.append(.end(nil))
        let queuedAfterComplete = afterComplete.decoderRefused()
        #expect(queuedAfterComplete)
        var names: [String] = []
        while let item = afterComplete.next(mayBeginRequest: true) { names.append(Self.name(item)) }
        #expect(names == ["head /a", "end", "malformed request"])

        var inBody = PipelinedRequests()
        inBody.append(Self.head("/a"))
        inBody.append(.body(ByteBuffer(string: "x")))
        let queuedInBody = inBody.decoderRefused()
        #expect(queuedInBody)
        _ = inBody.next(mayBeginRequest: true)
        _ = inBody.next(mayBeginRequest: false)
        // The broken body belongs to the request before it: it does not wait for a turn.
        let broken = inBody.next(mayBeginRequest: false)
        #expect(broken.map(Self.name) == "malformed body")

        var dropped = PipelinedRequests()
        dropped.append(Self.head("/a"))
        dropped.appendMalformedRequest()
        dropped.removeAll()
        let left = dropped.next(mayBeginRequest: true)
        #expect(dropped.isEmpty && left == nil)
    }
}
