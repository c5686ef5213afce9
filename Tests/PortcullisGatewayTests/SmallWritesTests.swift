import NIOCore
@testable import PortcullisGateway
import Testing

@Suite("SmallWrites: small writes joined while one waits")
struct SmallWritesTests {
    let allocator = ByteBufferAllocator()

    func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test("small writes go out as they come, one in four watched")
    func oneInFourIsWatched() {
        var writes = SmallWrites()
        var watched: [Bool] = []
        for index in 0..<3 {
            guard case .write(let out, let isWatched) = writes.take(bytes("\(index)"), allocator: allocator) else {
                Issue.record("write \(index) was held")
                return
            }
            #expect(out == bytes("\(index)"))
            watched.append(isWatched)
        }
        guard case .write(_, let fourth) = writes.take(bytes("3"), allocator: allocator) else {
            Issue.record("the fourth write was held")
            return
        }
        #expect(watched == [false, false, false])
        #expect(fourth)
        #expect(writes.watchedWriteWaits)
    }

    @Test("while a watched write waits, what follows is held and joined, and goes in order as the next watched write")
    func heldWhileWatchedWaits() {
        var writes = SmallWrites()
        for index in 0..<4 { _ = writes.take(bytes("\(index)"), allocator: allocator) }
        #expect(writes.watchedWriteWaits)
        for text in ["a", "b", String(repeating: "L", count: 2000), "c"] {
            guard case .held = writes.take(bytes(text), allocator: allocator) else {
                Issue.record("\(text.prefix(3)) was not held")
                return
            }
        }
        #expect(writes.heldBytes == 2003)
        let next = writes.watchedWriteCompleted().next
        #expect(next.map { String(buffer: $0) } == "ab" + String(repeating: "L", count: 2000) + "c")
        // The joined write is itself watched: it still waits.
        #expect(writes.watchedWriteWaits)
        #expect(writes.watchedWriteCompleted().next == nil)
        #expect(!writes.watchedWriteWaits)
    }

    @Test("a large write goes as it comes while nothing is held, a watched write waiting or not, and is never watched; behind held bytes it is held too")
    func largeWritesPass() {
        var writes = SmallWrites()
        for _ in 0..<10 {
            guard case .write(_, let watched) = writes.take(ByteBuffer(repeating: 1, count: 4096), allocator: allocator) else {
                Issue.record("a large write was held")
                return
            }
            #expect(!watched)
        }
        for index in 0..<4 { _ = writes.take(bytes("\(index)"), allocator: allocator) }
        #expect(writes.watchedWriteWaits)
        guard case .write(_, watched: false) = writes.take(ByteBuffer(repeating: 2, count: 4096), allocator: allocator) else {
            Issue.record("a large write was held while nothing was")
            return
        }
        guard case .held = writes.take(bytes("s"), allocator: allocator),
              case .held = writes.take(ByteBuffer(repeating: 3, count: 4096), allocator: allocator) else {
            Issue.record("a write behind held bytes went before them")
            return
        }
        #expect(writes.heldBytes == 4097)
    }

    @Test("holding heldLimit bytes makes the writer unwritable; drain hands them over and the watch goes on")
    func holdsTooMuchAndDrain() {
        var writes = SmallWrites()
        for index in 0..<4 { _ = writes.take(bytes("\(index)"), allocator: allocator) }
        for _ in 0..<(SmallWrites.heldLimit / 512) {
            #expect(!writes.holdsTooMuch)
            _ = writes.take(ByteBuffer(repeating: 7, count: 512), allocator: allocator)
        }
        #expect(writes.holdsTooMuch)
        #expect(writes.drain()?.readableBytes == SmallWrites.heldLimit)
        #expect(!writes.holdsTooMuch)
        #expect(writes.watchedWriteWaits)
        guard case .held = writes.take(bytes("x"), allocator: allocator) else {
            Issue.record("a write after a drain went while the watched write still waits")
            return
        }
    }

    @Test("a completion that leaves less than heldLimit held says the feeding side may be read again; one that found little held does not")
    func completionResumesTheFeed() {
        var writes = SmallWrites()
        for index in 0..<4 { _ = writes.take(bytes("\(index)"), allocator: allocator) }
        _ = writes.take(bytes("a"), allocator: allocator)
        // "a" goes as the next watched write, which waits in turn.
        #expect(!writes.watchedWriteCompleted().resumesFeed)
        _ = writes.take(bytes("b"), allocator: allocator)
        _ = writes.take(ByteBuffer(repeating: 7, count: SmallWrites.heldLimit), allocator: allocator)
        #expect(writes.holdsTooMuch)
        let completion = writes.watchedWriteCompleted()
        #expect(completion.resumesFeed)
        #expect(completion.next?.readableBytes == SmallWrites.heldLimit + 1)
        #expect(!writes.holdsTooMuch)
    }

    /// A channel that takes watched writes at random times: every byte comes out once and in
    /// order, and no small write is issued while a watched one waits (drains aside).
    @Test("randomised: every byte once, in order; no small write goes while a watched write waits")
    func randomised() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            var writes = SmallWrites()
            var sent: [UInt8] = [], received: [UInt8] = []
            var waiting = false, wroteWhileWaiting = false, heldUnexpectedly = false, stateDiffered = false
            var counter: UInt8 = 0
            for _ in 0..<300 {
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<6:
                    let size = Bool.random(using: &generator) ? Int.random(in: 1...40, using: &generator) : Int.random(in: 1...3000, using: &generator)
                    let chunk = (0..<size).map { _ in counter &+= 1; return counter }
                    sent += chunk
                    let heldBefore = writes.heldBytes
                    switch writes.take(ByteBuffer(bytes: chunk), allocator: allocator) {
                    case .write(let out, let watched):
                        // While a watched write waits only a large write may go, and only with nothing held.
                        if waiting && (watched || size < SmallWrites.smallWrite || heldBefore > 0) { wroteWhileWaiting = true }
                        received += out.readableBytesView
                        if watched { waiting = true }
                    case .held:
                        if !waiting { heldUnexpectedly = true }
                    }
                case 6..<9:
                    guard waiting else { continue }
                    if let next = writes.watchedWriteCompleted().next {
                        received += next.readableBytesView
                    } else {
                        waiting = false
                    }
                default:
                    if let held = writes.drain() { received += held.readableBytesView }
                }
                if waiting != writes.watchedWriteWaits { stateDiffered = true }
            }
            if let held = writes.drain() { received += held.readableBytesView }
            #expect(received == sent)
            #expect(!wroteWhileWaiting, "a write went while a watched write waited")
            #expect(!heldUnexpectedly && !stateDiffered)
        }
    }
}
