import Foundation
import Synchronization

/// Whole lines written to a file descriptor by a thread of its own, so the threads that log —
/// event loops — never wait on a write: they copy the line into a buffer under a lock and go on.
///
/// The writer thread sleeps until a line arrives, waits `batchDelay` for more, then writes what
/// has gathered in writes of at most `PIPE_BUF` bytes cut at line ends (a pipe keeps such a write
/// whole, so another writer to the same descriptor never lands inside a line of up to `PIPE_BUF`
/// bytes; a longer line is one write of its own, which a pipe may split). When the descriptor
/// does not keep up (a full pipe, a stopped reader) and `maxBuffered` bytes are waiting, further
/// lines are dropped and counted (`droppedLines`) rather than held in memory without bound or
/// made to stall the caller.
///
/// swift-log's stream handler, which this replaces for both logs, takes a lock and makes a
/// `write` per line on the caller's thread (and a `stat` of `/etc/localtime` per timestamp).
public final class LineWriter: Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var writerWaiting = false
        /// Bytes taken by the writer and not yet written.
        var inFlight = 0
        var dropped = 0
        var closed = false
    }

    private let descriptor: Int32
    private let maxBuffered: Int
    private let batchDelay: TimeInterval
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)

    /// The process's standard error: where node processes write their logs.
    public static let standardError = LineWriter(descriptor: 2)

    /// - Parameters:
    ///   - maxBuffered: bytes held for the writer before lines are dropped.
    ///   - batchDelay: how long the writer waits after the first line for others to join it.
    public init(descriptor: Int32, maxBuffered: Int = 8 << 20, batchDelay: Duration = .milliseconds(1)) {
        self.descriptor = descriptor
        self.maxBuffered = maxBuffered
        self.batchDelay = Double(batchDelay.components.seconds) + Double(batchDelay.components.attoseconds) / 1e18
        let thread = Thread { [self] in run() }
        thread.name = "portcullis-log-writer"
        thread.start()
    }

    /// Lines dropped because `maxBuffered` bytes were waiting.
    public var droppedLines: Int { state.withLock { $0.dropped } }

    /// Queues `line` (which ends with a line feed) for writing. Never blocks on I/O.
    public func append(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            let wakeWriter = state.withLock { state -> Bool in
                guard !state.closed, state.buffer.count + state.inFlight + bytes.count <= maxBuffered else {
                    state.dropped += 1
                    return false
                }
                state.buffer.append(contentsOf: bytes)
                defer { state.writerWaiting = false }
                return state.writerWaiting
            }
            if wakeWriter { wake.signal() }
        }
    }

    /// Waits until every line queued so far is written, or `timeout` passes; for a process about
    /// to exit.
    public func flush(timeout: Duration = .seconds(2)) {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !state.withLock({ $0.buffer.isEmpty && $0.inFlight == 0 }) {
            Thread.sleep(forTimeInterval: 0.001)
        }
    }

    /// Writes what is queued, then ends the writer's thread; later lines are dropped. For
    /// writers that do not live as long as the process (tests).
    public func close() {
        flush()
        let wakeWriter = state.withLock { state -> Bool in
            state.closed = true
            defer { state.writerWaiting = false }
            return state.writerWaiting
        }
        if wakeWriter { wake.signal() }
    }

    private func run() {
        var pending: [UInt8] = []
        while true {
            let next = state.withLock { state -> (lines: Bool, closed: Bool) in
                if state.buffer.isEmpty {
                    state.writerWaiting = !state.closed
                    return (false, state.closed)
                }
                return (true, false)
            }
            if next.closed { return }
            if !next.lines {
                wake.wait()
                continue
            }
            // Lines that arrive meanwhile share this write.
            Thread.sleep(forTimeInterval: batchDelay)
            state.withLock { state in
                swap(&pending, &state.buffer)
                state.inFlight = pending.count
            }
            writeLines(pending)
            pending.removeAll(keepingCapacity: pending.count <= 1 << 20)
            state.withLock { $0.inFlight = 0 }
        }
    }

    /// Writes `bytes` (whole lines) in pieces of at most `PIPE_BUF` bytes that end at a line end
    /// (a longer line is a piece of its own).
    private func writeLines(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                var end = min(start + Int(PIPE_BUF), raw.count)
                if end < raw.count {
                    // Back to the last line end in the piece; if there is none, on to the line's own end.
                    var cut = end
                    while cut > start && raw[cut - 1] != UInt8(ascii: "\n") { cut -= 1 }
                    if cut == start {
                        cut = end
                        while cut < raw.count && raw[cut - 1] != UInt8(ascii: "\n") { cut += 1 }
                    }
                    end = cut
                }
                writeAll(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                start = end
            }
        }
    }

    private func writeAll(_ piece: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < piece.count {
            let written = Foundation.write(descriptor, piece.baseAddress! + offset, piece.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0 && (errno == EINTR || errno == EAGAIN) {
                if errno == EAGAIN { Thread.sleep(forTimeInterval: 0.001) }
            } else {
                // The descriptor is gone (closed, EPIPE): what is left of the piece is lost.
                return
            }
        }
    }
}
