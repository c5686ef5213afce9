@testable import PortcullisGateway
import Testing

@Suite("HTTP/2 response-write deadline")
struct HTTP2ResponseWriteDeadlineTests {
    @Test("the deadline runs while a response whose head is out waits on the client, stops when the client takes it, and waiting before the head arms nothing")
    func armedWhileTheClientHoldsTheResponse() {
        var deadline = HTTP2ResponseWriteDeadline()
        #expect(deadline.observed(waits: true, headSent: false) == .none)
        #expect(deadline.observed(waits: true, headSent: true) == .arm)
        // Still waiting: armed once, not moved.
        #expect(deadline.observed(waits: true, headSent: true) == .none)
        #expect(deadline.observed(waits: false, headSent: true) == .cancel)
        #expect(deadline.observed(waits: false, headSent: true) == .none)
        #expect(deadline.observed(waits: true, headSent: true) == .arm)
    }

    @Test("from the response's end the deadline runs until the stream closes: taking writes no longer stops it, and an end while it already runs leaves it as it is")
    func armedFromTheEndUntilTheStreamCloses() {
        var quiet = HTTP2ResponseWriteDeadline()
        #expect(quiet.responseEnded() == .arm)
        #expect(quiet.observed(waits: false, headSent: true) == .none)

        var waiting = HTTP2ResponseWriteDeadline()
        #expect(waiting.observed(waits: true, headSent: true) == .arm)
        #expect(waiting.responseEnded() == .none)
        #expect(waiting.observed(waits: false, headSent: true) == .none)
    }

    @Test("once the deadline has passed (the stream is being reset) it is never armed again")
    func notArmedAfterItPassed() {
        var deadline = HTTP2ResponseWriteDeadline()
        #expect(deadline.observed(waits: true, headSent: true) == .arm)
        deadline.passed()
        #expect(deadline.observed(waits: true, headSent: true) == .none)
        #expect(deadline.observed(waits: false, headSent: true) == .none)
        #expect(deadline.responseEnded() == .none)
    }
}
