import NIOCore

/// A stream whose deadlines `HTTP2StreamDeadlines` keeps.
protocol HTTP2StreamDeadlineOwner: AnyObject {
    /// The deadline of `kind` passed before it was cancelled.
    func deadlinePassed(_ kind: HTTP2StreamDeadlines.Kind)

    /// For the overload guard, while the stream's response waits on its client: the stream's ID
    /// and the response bytes it holds back meanwhile (nil: none to tell).
    var responseWait: (stream: UInt32, heldBytes: Int)? { get }
}

extension HTTP2StreamDeadlineOwner {
    var responseWait: (stream: UInt32, heldBytes: Int)? { nil }
}

/// The deadlines of one HTTP/2 client connection's streams, behind one scheduled check. A timer
/// per stream would cost each stream a task scheduled on the event loop and cancelled — a heap
/// insert, a heap removal and a promise failed — though nearly every deadline is cancelled long
/// before it comes (figures: docs/benchmarks.md). Here arming and cancelling a
/// deadline are a dictionary insert or update and a removal. The check is scheduled for the
/// earliest deadline armed while none earlier is pending; when it runs it expires what has passed
/// and schedules itself for the earliest left, so with one timeout per route it runs about once
/// per timeout while streams come and go, scanning the streams then armed (at most the
/// connection's concurrent streams).
///
/// A stream has at most one deadline of each `Kind`. An armed owner is held strongly until its
/// deadlines are cancelled or pass; stream handlers cancel theirs in `handlerRemoved`, and the
/// connection stops the whole when it closes. Confined to the connection's event loop.
final class HTTP2StreamDeadlines {
    /// What a deadline bounds.
    enum Kind: Int, CaseIterable {
        /// The upstream's response head, after the request was sent (`response_header_timeout`).
        case responseHeader
        /// The client's request body, below `limits.request_body_min_rate` (`RequestBodyRate`).
        case requestBody
        /// The client taking the response, while the stream cannot be written
        /// (`limits.response_write_timeout`).
        case responseWrite
    }

    /// One stream's deadlines, by kind.
    private struct Entry {
        let owner: any HTTP2StreamDeadlineOwner
        var at: (NIODeadline?, NIODeadline?, NIODeadline?) = (nil, nil, nil)

        init(owner: any HTTP2StreamDeadlineOwner) {
            self.owner = owner
        }

        subscript(kind: Kind) -> NIODeadline? {
            get {
                switch kind {
                case .responseHeader: at.0
                case .requestBody: at.1
                case .responseWrite: at.2
                }
            }
            set {
                switch kind {
                case .responseHeader: at.0 = newValue
                case .requestBody: at.1 = newValue
                case .responseWrite: at.2 = newValue
                }
            }
        }

        var isEmpty: Bool { at.0 == nil && at.1 == nil && at.2 == nil }
    }

    private let eventLoop: any EventLoop
    private var armed: [ObjectIdentifier: Entry] = [:]
    private var pending = PendingCheck()

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// How many streams have a deadline armed.
    var count: Int { armed.count }

    /// `owner`'s deadline of `kind` is `deadline`, replacing any it had.
    func arm(_ owner: any HTTP2StreamDeadlineOwner, _ kind: Kind, at deadline: NIODeadline) {
        armed[ObjectIdentifier(owner), default: Entry(owner: owner)][kind] = deadline
        if !pending.isPending(by: deadline) { scheduleCheck(at: deadline) }
    }

    func arm(_ owner: any HTTP2StreamDeadlineOwner, _ kind: Kind, after timeout: TimeAmount) {
        arm(owner, kind, at: eventLoop.now + timeout)
    }

    /// `owner` has no deadline of `kind` (any it had is dropped).
    func cancel(_ owner: any HTTP2StreamDeadlineOwner, _ kind: Kind) {
        guard let index = armed.index(forKey: ObjectIdentifier(owner)) else { return }
        armed.values[index][kind] = nil
        if armed.values[index].isEmpty { armed.remove(at: index) }
    }

    /// `owner` has no deadline at all.
    func cancelAll(_ owner: any HTTP2StreamDeadlineOwner) {
        armed.removeValue(forKey: ObjectIdentifier(owner))
    }

    /// The streams with a deadline of `kind` armed.
    func owners(armed kind: Kind) -> [any HTTP2StreamDeadlineOwner] {
        armed.values.compactMap { $0[kind] == nil ? nil : $0.owner }
    }

    /// Every deadline of `kind` whose wait began `waitedFor` or more before `now` passes now, as
    /// if its time had come — for deadlines armed `timeout` after their wait began (the overload
    /// guard cutting waits short); returns how many passed. `waitCountsFrom`, asked of each such
    /// stream, may move the start of its wait later (nil leaves it).
    func expire(_ kind: Kind, waitedFor: TimeAmount, timeout: TimeAmount, now: NIODeadline,
                waitCountsFrom: (any HTTP2StreamDeadlineOwner) -> NIODeadline? = { _ in nil }) -> Int {
        // Began at or before now − waitedFor ⇔ deadline (begin + timeout) at or before this.
        let latest = now + timeout - waitedFor
        let keys = armed.compactMap { key, entry -> ObjectIdentifier? in
            guard let deadline = entry[kind], deadline <= latest else { return nil }
            if let later = waitCountsFrom(entry.owner), later > now - waitedFor { return nil }
            return key
        }
        guard !keys.isEmpty else { return 0 }
        var passed: [any HTTP2StreamDeadlineOwner] = []
        for key in keys {
            guard var entry = armed[key] else { continue }
            passed.append(entry.owner)
            entry[kind] = nil
            armed[key] = entry.isEmpty ? nil : entry
        }
        // After the bookkeeping, as in `check`: an owner told may arm or cancel deadlines.
        for owner in passed { owner.deadlinePassed(kind) }
        return passed.count
    }

    /// The connection closed: nothing is armed or scheduled any more.
    func stop() {
        armed.removeAll()
        pending.cancel()
    }

    /// A handle on one kind of one stream's deadline, for a part that keeps a single deadline of
    /// its own (`RequestBodyRate`). `stop()` lets go of the owner.
    func slot(for owner: any HTTP2StreamDeadlineOwner, _ kind: Kind) -> Slot {
        Slot(deadlines: self, owner: owner, kind: kind)
    }

    final class Slot: RequestBodyDeadline {
        private let deadlines: HTTP2StreamDeadlines
        private var owner: (any HTTP2StreamDeadlineOwner)?
        private let kind: Kind

        fileprivate init(deadlines: HTTP2StreamDeadlines, owner: any HTTP2StreamDeadlineOwner, kind: Kind) {
            self.deadlines = deadlines
            self.owner = owner
            self.kind = kind
        }

        func set(_ deadline: NIODeadline) {
            if let owner { deadlines.arm(owner, kind, at: deadline) }
        }

        func cancel() {
            if let owner { deadlines.cancel(owner, kind) }
        }

        func stop() {
            cancel()
            owner = nil
        }
    }

    private func scheduleCheck(at when: NIODeadline) {
        pending.schedule(at: when, on: eventLoop) { [self] in check() }
    }

    private func check() {
        pending.ran()
        let now = eventLoop.now
        var passed: [(owner: any HTTP2StreamDeadlineOwner, kind: Kind)] = []
        var changed: [(key: ObjectIdentifier, entry: Entry)] = []
        var earliest: NIODeadline?
        for (key, var entry) in armed {
            var expired = false
            for kind in Kind.allCases {
                guard let deadline = entry[kind] else { continue }
                if deadline <= now {
                    passed.append((entry.owner, kind))
                    entry[kind] = nil
                    expired = true
                } else if earliest.map({ deadline < $0 }) ?? true {
                    earliest = deadline
                }
            }
            if expired { changed.append((key, entry)) }
        }
        for (key, entry) in changed {
            if entry.isEmpty { armed.removeValue(forKey: key) } else { armed[key] = entry }
        }
        if let earliest { scheduleCheck(at: earliest) }
        // After the bookkeeping: an owner told may arm or cancel deadlines.
        for (owner, kind) in passed { owner.deadlinePassed(kind) }
    }
}
