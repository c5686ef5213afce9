#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Remembers tokens that verified, so a client sending the same token again costs a hash, one
/// shard lock and a byte comparison instead of a signature check.
///
/// - Keyed by the whole token: a hash picks the shard and slot, and a hit needs an exact byte
///   comparison with the stored token, so a collision can only cost a miss.
/// - Bounded: each shard holds `capacity / shards` entries and evicts the oldest insertion.
/// - An entry is used only while `now < exp`, only for the verifier that stored it (a config
///   reload that builds a new verifier starts cold), and only while its key is still in the
///   issuer's set and not revoked: every hit compares the ``KeySetStore`` generation with the one
///   the entry was checked against, and re-checks the key when it moved.
/// - Revocation of tokens (by `jti`, `sub`, client) is never cached here: callers check it on
///   every request, hit or miss.
public final class VerifiedTokenCache: Sendable {
    struct Entry {
        let token: [UInt8]
        let result: VerifiedToken
        let key: VerificationKey
        let verifierID: UInt64
        var checkedGeneration: UInt64
        let sequence: UInt64
    }

    struct ShardState {
        var entries: [UInt64: Entry] = [:]
        var insertionOrder: [(hash: UInt64, sequence: UInt64)] = []
        var orderHead = 0
        var nextSequence: UInt64 = 0
        var hits = 0
        var misses = 0
    }

    final class Shard: Sendable {
        let state = Mutex(ShardState())
    }

    private let shards: [Shard]
    private let shardCapacity: Int
    /// Total capacity (rounded up to a multiple of the shard count).
    public let capacity: Int

    /// - Parameters:
    ///   - capacity: maximum number of tokens kept (across all shards).
    ///   - shards: independent locks; requests for different tokens rarely wait on each other.
    public init(capacity: Int, shards: Int = 16) {
        let shardCount = max(1, shards)
        shardCapacity = max(1, (max(1, capacity) + shardCount - 1) / shardCount)
        self.capacity = shardCapacity * shardCount
        self.shards = (0..<shardCount).map { _ in Shard() }
    }

    /// Entries currently held (some may be expired and not yet evicted).
    public var count: Int { shards.reduce(0) { total, shard in total + shard.state.withLock { $0.entries.count } } }
    /// Lookups that returned a cached token, summed over shards (not reset by `removeAll()`).
    public var hits: Int { shards.reduce(0) { total, shard in total + shard.state.withLock { $0.hits } } }
    /// Lookups that returned nothing (absent, expired, another verifier's, or its key no longer
    /// trusted), summed over shards (not reset by `removeAll()`).
    public var misses: Int { shards.reduce(0) { total, shard in total + shard.state.withLock { $0.misses } } }

    /// Drops every entry.
    public func removeAll() {
        for shard in shards {
            shard.state.withLock { state in
                state.entries.removeAll()
                state.insertionOrder.removeAll()
                state.orderHead = 0
            }
        }
    }

    /// The hash of a token: its length and last 32 bytes (inside the signature, so effectively
    /// random for distinct valid tokens), through the per-process randomly seeded `Hasher`.
    /// Hashing the tail rather than the whole token keeps a hit under a microsecond; only
    /// verified tokens are ever inserted, and a hit still compares every byte.
    @inline(__always)
    static func hash(_ token: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(token.count)
        let tailStart = max(0, token.count - 32)
        hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: token[tailStart...]))
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    @inline(__always)
    static func equal(_ stored: [UInt8], _ token: UnsafeRawBufferPointer) -> Bool {
        stored.withUnsafeBytes { bytes in
            bytes.count == token.count && (token.isEmpty || memcmp(bytes.baseAddress!, token.baseAddress!, token.count) == 0)
        }
    }

    /// Looks a token up. `stillTrusted` re-checks the entry's key when the key store moved on.
    func lookup(_ token: UnsafeRawBufferPointer, hash: UInt64, now: Int64, verifierID: UInt64,
                generation: UInt64, stillTrusted: (VerificationKey, VerifiedToken) -> UInt64?) -> VerifiedToken? {
        let shard = shards[Int(hash % UInt64(shards.count))]
        return shard.state.withLock { state -> VerifiedToken? in
            guard let entry = state.entries[hash], entry.verifierID == verifierID, Self.equal(entry.token, token) else {
                state.misses += 1
                return nil
            }
            guard now < entry.result.expiresAt else {
                state.entries[hash] = nil
                state.misses += 1
                return nil
            }
            if entry.checkedGeneration != generation {
                guard let checked = stillTrusted(entry.key, entry.result) else {
                    state.entries[hash] = nil
                    state.misses += 1
                    return nil
                }
                state.entries[hash]?.checkedGeneration = checked
            }
            state.hits += 1
            return entry.result
        }
    }

    func insert(_ token: UnsafeRawBufferPointer, hash: UInt64, result: VerifiedToken, key: VerificationKey,
                verifierID: UInt64, generation: UInt64) {
        let shard = shards[Int(hash % UInt64(shards.count))]
        let bytes = [UInt8](token)
        shard.state.withLock { state in
            let sequence = state.nextSequence
            state.nextSequence += 1
            if state.entries[hash] == nil {
                while state.entries.count >= shardCapacity, state.orderHead < state.insertionOrder.count {
                    let oldest = state.insertionOrder[state.orderHead]
                    state.orderHead += 1
                    if state.entries[oldest.hash]?.sequence == oldest.sequence { state.entries[oldest.hash] = nil }
                }
            }
            state.entries[hash] = Entry(token: bytes, result: result, key: key, verifierID: verifierID,
                                        checkedGeneration: generation, sequence: sequence)
            state.insertionOrder.append((hash, sequence))
            // Compact the order log once its consumed prefix dominates, keeping appends amortized O(1).
            if state.orderHead > 64, state.orderHead * 2 > state.insertionOrder.count {
                state.insertionOrder.removeFirst(state.orderHead)
                state.orderHead = 0
            }
            // Entries removed on expiry or replacement leave stale order records; bound them too.
            if state.insertionOrder.count - state.orderHead > 4 * shardCapacity + 64 {
                state.insertionOrder = state.insertionOrder[state.orderHead...].filter { state.entries[$0.hash]?.sequence == $0.sequence }
                state.orderHead = 0
            }
        }
    }
}
