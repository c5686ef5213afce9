import Synchronization

/// Revoked `jti`s (or sessions: `Fingerprint.session`) with their expiry, for a lookup on every request.
///
/// Why hand-written: a `Set<String>` of 1M ids costs ~100 MB (each id a heap string) and needs a
/// lock around every read; the budget is 64 MB and 100 ns. This is an open-addressing
/// table of 16-byte slots — a 64-bit fingerprint and the expiry — at most half full, so 1M ids
/// take 32 MB. The fingerprint is a 64-bit hash of the jti, randomly seeded per process, and the
/// slot index is taken from its high bits, so a rebuild can re-place entries
/// without the jti and a false match needs a full 64-bit collision.
///
/// One writer (the node's sync task) inserts while any number of event-loop threads look up,
/// without locks: each slot is two atomics, the writer stores the expiry before publishing the
/// fingerprint (release) and readers load the fingerprint first (acquire). Entries are never
/// removed in place; expired ones are dropped when the writer rebuilds the table (`compacted`).
final class RevokedTokenTable: @unchecked Sendable {
    // Safety of @unchecked Sendable: `slots` is allocated once in init and freed in deinit, the
    // pointer itself never changes, and every access to the memory it points to is an atomic
    // load or store. Mutation is single-writer by contract (documented on `insert`).
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    let capacity: Int
    private let mask: Int
    private let stored = Atomic<Int>(0)

    /// Room for `expected` entries at ≤ 50 % load.
    init(expected: Int) {
        var capacity = 1024
        while capacity < expected * 2 { capacity <<= 1 }
        self.capacity = capacity
        self.mask = capacity - 1
        slots = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: capacity * 2)
        for index in 0..<(capacity * 2) {
            (slots + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        slots.deinitialize(count: capacity * 2)
        slots.deallocate()
    }

    var count: Int { stored.load(ordering: .relaxed) }

    /// True when another insert would push the load past 50 %.
    var isFull: Bool { count * 2 >= capacity }

    struct Fingerprint: Equatable {
        /// Never 0: 0 marks an empty slot.
        let check: UInt64
        var index: Int { Int(truncatingIfNeeded: check >> 20) }

        init(check: UInt64) {
            self.check = check | 1
        }

        /// A session's fingerprint: its issuer's and its `sid`'s combined, asymmetrically, so that
        /// no string is built for it (it is taken per request for tokens with a `sid`).
        static func session(issuer: Fingerprint, sid: Fingerprint) -> Fingerprint {
            Fingerprint(check: RevokedTokenTable.mix(issuer.check &* 0x9E37_79B9_7F4A_7C15 ^ sid.check))
        }
    }

    /// The issuer of a session revocation for every issuer (`*`).
    static let anyIssuer = fingerprint("*")

    /// Seed of `fingerprint`, random per process.
    private static let seed = UInt64.random(in: .min ... .max)

    /// Fingerprint of a jti given as UTF-8 bytes (as it arrives from Redis): a seeded
    /// multiply-xorshift hash over 8-byte words. Why not SipHash (`Hasher`): this runs on every
    /// request and SipHash was a sixth of the lookup; the seed is random per process and the jtis
    /// that reach it are in verified tokens or chosen by admins, so flooding is not a concern.
    static func fingerprint(utf8 bytes: UnsafeRawBufferPointer) -> Fingerprint {
        var hash = seed ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        var offset = 0
        while offset + 8 <= bytes.count {
            hash = mix(hash ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        if offset < bytes.count {
            var tail: UInt64 = 0
            for index in offset..<bytes.count { tail = tail << 8 | UInt64(bytes[index]) }
            hash = mix(hash ^ tail)
        }
        return Fingerprint(check: mix(hash))
    }

    @inline(__always)
    fileprivate static func mix(_ value: UInt64) -> UInt64 {
        var x = value &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 31
        x = x &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 29)
    }

    static func fingerprint(_ jti: String) -> Fingerprint {
        var text = jti
        return text.withUTF8 { fingerprint(utf8: UnsafeRawBufferPointer($0)) }
    }

    static func fingerprint(_ bytes: [UInt8]) -> Fingerprint {
        bytes.withUnsafeBytes { fingerprint(utf8: $0) }
    }

    /// Adds or extends an entry. Single writer only.
    /// - Returns: false when the table is full (the caller rebuilds a larger one).
    @discardableResult
    func insert(_ fingerprint: Fingerprint, expiresAt: Int64) -> Bool {
        var index = fingerprint.index & mask
        for _ in 0..<capacity {
            let check = slots[index * 2].load(ordering: .acquiring)
            if check == fingerprint.check {
                let current = Int64(bitPattern: slots[index * 2 + 1].load(ordering: .relaxed))
                if expiresAt > current {
                    slots[index * 2 + 1].store(UInt64(bitPattern: expiresAt), ordering: .releasing)
                }
                return true
            }
            if check == 0 {
                guard !isFull else { return false }
                slots[index * 2 + 1].store(UInt64(bitPattern: expiresAt), ordering: .relaxed)
                slots[index * 2].store(fingerprint.check, ordering: .releasing)
                stored.wrappingAdd(1, ordering: .relaxed)
                return true
            }
            index = (index + 1) & mask
        }
        return false
    }

    /// The stored expiry for the jti, if revoked.
    func expiry(of fingerprint: Fingerprint) -> Int64? {
        var index = fingerprint.index & mask
        for _ in 0..<capacity {
            let check = slots[index * 2].load(ordering: .acquiring)
            if check == fingerprint.check {
                return Int64(bitPattern: slots[index * 2 + 1].load(ordering: .acquiring))
            }
            if check == 0 { return nil }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Every live entry, for rebuilding.
    func forEach(_ body: (Fingerprint, Int64) -> Void) {
        for index in 0..<capacity {
            let check = slots[index * 2].load(ordering: .acquiring)
            guard check != 0 else { continue }
            let expiry = Int64(bitPattern: slots[index * 2 + 1].load(ordering: .relaxed))
            body(Fingerprint(check: check), expiry)
        }
    }

    /// A new table holding the entries not yet expired at `now`, sized for `extra` more.
    func compacted(now: Int64, extra: Int = 0) -> RevokedTokenTable {
        var live = 0
        forEach { _, expiry in if expiry > now { live += 1 } }
        let next = RevokedTokenTable(expected: max(live + extra, 1024))
        forEach { fingerprint, expiry in
            if expiry > now { next.insert(fingerprint, expiresAt: expiry) }
        }
        return next
    }
}
