import NIOCore

/// A part of a client connection that can cut, ahead of its own timeout, what has waited too long
/// for its client to take a response: the connection's response-write deadline
/// (`ConnectionTimeoutHandler`), its HTTP/2 streams' (`HTTP2ConnectionShared`).
protocol OverloadShedding: AnyObject {
    /// Cuts every response that has waited on its client for `waitedFor` or longer by `now`, as
    /// if `limits.response_write_timeout` had passed; returns how many connections or streams it cut.
    func shedStalledResponses(waitedFor: TimeAmount, now: NIODeadline) -> Int
}

/// The `OverloadShedding` parts of one event loop's connections, for `MemoryGuard` to call on that
/// loop. A connection joins once (a dictionary insert) and leaves when it closes. Confined to
/// its event loop; members are held strongly until they leave, which they do on every close
/// (`handlerRemoved`, the channel's close future).
final class OverloadSheddingSet {
    private var members: [ObjectIdentifier: any OverloadShedding] = [:]

    init() {}

    var count: Int { members.count }

    func add(_ member: any OverloadShedding) {
        members[ObjectIdentifier(member)] = member
    }

    func remove(_ member: any OverloadShedding) {
        members.removeValue(forKey: ObjectIdentifier(member))
    }

    /// Asks every member to cut what has waited `waitedFor` or longer; returns how many were cut.
    func shed(waitedFor: TimeAmount, now: NIODeadline) -> Int {
        // A member cut may leave the set while this runs: iterate a copy.
        let current = Array(members.values)
        return current.reduce(0) { $0 + $1.shedStalledResponses(waitedFor: waitedFor, now: now) }
    }
}
