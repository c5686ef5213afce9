@testable import PortcullisGateway
import NIOCore
import NIOEmbedded
import Testing

/// One connection's stream deadlines behind one scheduled check, on an embedded event loop's
/// clock.
@Suite("HTTP/2 stream deadlines")
struct HTTP2StreamDeadlinesTests {
    final class Stream: HTTP2StreamDeadlineOwner {
        var passed: [NIODeadline] = []
        var kinds: [HTTP2StreamDeadlines.Kind] = []
        let loop: EmbeddedEventLoop
        var onPassed: (() -> Void)?
        init(_ loop: EmbeddedEventLoop) { self.loop = loop }
        func deadlinePassed(_ kind: HTTP2StreamDeadlines.Kind) {
            passed.append(loop.now)
            kinds.append(kind)
            onPassed?()
        }
    }

    @Test("a deadline passes once, at its time; one cancelled before never does; an earlier one armed behind a later one is not held back by it")
    func deadlinesPassAtTheirTime() throws {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        let start = loop.now
        let late = Stream(loop), cancelled = Stream(loop), early = Stream(loop)
        deadlines.arm(late, .responseHeader, after: .seconds(10))
        deadlines.arm(cancelled, .responseHeader, after: .seconds(2))
        deadlines.arm(early, .responseHeader, after: .seconds(1))
        deadlines.cancel(cancelled, .responseHeader)
        loop.advanceTime(by: .milliseconds(999))
        #expect(early.passed.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(early.passed == [start + .seconds(1)])
        loop.advanceTime(by: .seconds(5))
        #expect(cancelled.passed.isEmpty && late.passed.isEmpty)
        loop.advanceTime(by: .seconds(5))
        #expect(late.passed == [start + .seconds(10)])
        loop.advanceTime(by: .seconds(60))
        #expect(early.passed.count == 1 && late.passed.count == 1)
        #expect(deadlines.count == 0)
    }

    @Test("re-arming moves a stream's deadline; an owner told its deadline passed may arm again; stop drops everything")
    func reArmAndStop() throws {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        let start = loop.now
        let moved = Stream(loop)
        deadlines.arm(moved, .responseHeader, after: .seconds(1))
        deadlines.arm(moved, .responseHeader, after: .seconds(3))
        loop.advanceTime(by: .seconds(2))
        #expect(moved.passed.isEmpty, "the first deadline stayed")
        loop.advanceTime(by: .seconds(1))
        #expect(moved.passed == [start + .seconds(3)])

        let again = Stream(loop)
        again.onPassed = { if again.passed.count == 1 { deadlines.arm(again, .responseHeader, after: .seconds(1)) } }
        deadlines.arm(again, .responseHeader, after: .seconds(1))
        loop.advanceTime(by: .seconds(2))
        #expect(again.passed == [start + .seconds(4), start + .seconds(5)])

        let stopped = Stream(loop)
        deadlines.arm(stopped, .responseHeader, after: .seconds(1))
        deadlines.stop()
        loop.advanceTime(by: .seconds(10))
        #expect(stopped.passed.isEmpty && deadlines.count == 0)
    }

    @Test("many streams armed and cancelled in turn leave nothing armed, and the one still armed passes at its time")
    func churn() throws {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        var streams: [Stream] = []
        for index in 0..<1_000 {
            let stream = Stream(loop)
            deadlines.arm(stream, .responseHeader, after: .seconds(30))
            if index != 500 { deadlines.cancel(stream, .responseHeader) }
            streams.append(stream)
            loop.advanceTime(by: .milliseconds(10))
        }
        #expect(deadlines.count == 1)
        loop.advanceTime(by: .seconds(30))
        #expect(streams.enumerated().allSatisfy { $0.offset == 500 ? $0.element.passed.count == 1 : $0.element.passed.isEmpty })
        #expect(deadlines.count == 0)
    }

    @Test("a stream's deadlines of different kinds pass apart, each at its time; cancelling one kind leaves the others; cancelAll drops them all")
    func kindsAreApart() throws {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        let start = loop.now
        let stream = Stream(loop)
        deadlines.arm(stream, .requestBody, after: .seconds(2))
        deadlines.arm(stream, .responseWrite, after: .seconds(1))
        deadlines.arm(stream, .responseHeader, after: .seconds(3))
        deadlines.cancel(stream, .responseHeader)
        #expect(deadlines.count == 1)
        loop.advanceTime(by: .seconds(1))
        #expect(stream.kinds == [.responseWrite] && stream.passed == [start + .seconds(1)])
        loop.advanceTime(by: .seconds(1))
        #expect(stream.kinds == [.responseWrite, .requestBody] && stream.passed.last == start + .seconds(2))
        loop.advanceTime(by: .seconds(5))
        #expect(stream.kinds.count == 2 && deadlines.count == 0)

        let dropped = Stream(loop)
        deadlines.arm(dropped, .requestBody, after: .seconds(1))
        deadlines.arm(dropped, .responseWrite, after: .seconds(1))
        deadlines.cancelAll(dropped)
        loop.advanceTime(by: .seconds(5))
        #expect(dropped.kinds.isEmpty && deadlines.count == 0)
    }

    @Test("a slot keeps one kind of a stream's deadline for RequestBodyRate: set moves it, cancel drops it, and after stop it arms nothing")
    func slot() throws {
        let loop = EmbeddedEventLoop()
        let deadlines = HTTP2StreamDeadlines(eventLoop: loop)
        let start = loop.now
        let stream = Stream(loop)
        let slot = deadlines.slot(for: stream, .requestBody)
        slot.set(start + .seconds(1))
        slot.set(start + .seconds(2))
        loop.advanceTime(by: .milliseconds(1_500))
        #expect(stream.kinds.isEmpty)
        loop.advanceTime(by: .milliseconds(500))
        #expect(stream.kinds == [.requestBody] && stream.passed == [start + .seconds(2)])
        slot.set(start + .seconds(3))
        slot.cancel()
        loop.advanceTime(by: .seconds(2))
        #expect(stream.kinds.count == 1 && deadlines.count == 0)
        slot.stop()
        slot.set(start + .seconds(5))
        #expect(deadlines.count == 0)
    }
}
