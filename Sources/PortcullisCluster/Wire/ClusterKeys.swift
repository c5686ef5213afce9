/// Every Redis key and channel the cluster uses — the whole Redis schema in one place.
/// `prefix` (default `portcullis:`) lets several clusters share one Redis.
public struct ClusterKeys: Sendable {
    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    // MARK: Revocations

    /// INCR counter: the sequence number of the last revocation change.
    public var revocationSequence: String { prefix + "rev:seq" }
    /// ZSET score=seq member=`RevocationEvent` wire text: every change still in force, in order.
    public var revocationLog: String { prefix + "rev:log" }
    /// ZSET score=expiry (unix seconds) member=seq: when each log entry may be pruned.
    public var revocationExpiry: String { prefix + "rev:expiry" }
    /// A random id set by the first revocation write: a different (or missing) epoch means Redis
    /// lost its data, and nodes merge rather than trust the new, shorter history.
    public var revocationEpoch: String { prefix + "rev:epoch" }
    /// Highest sequence removed from the log while still in force (a lifted cut-off's delete
    /// event after its retention); a node that applied less must resync from the snapshot.
    public var revocationTrimmed: String { prefix + "rev:trimmed" }
    /// HASH revocation id → sequence number.
    public var revocationIDs: String { prefix + "rev:ids" }
    /// ZSET score=exp member=jti: revoked token ids, the bulk of a snapshot.
    public var revokedJTIs: String { prefix + "rev:jti" }
    /// HASH `issuer|sub` → cut-off (unix seconds): tokens of that subject issued earlier are revoked.
    public var subjectCutoffs: String { prefix + "rev:sub" }
    /// HASH `issuer|client` → cut-off: tokens of that client issued earlier are revoked.
    public var clientCutoffs: String { prefix + "rev:client" }
    /// HASH `issuer|kid` → revocation time: compromised keys.
    public var revokedKeys: String { prefix + "rev:kid" }
    /// HASH node id → microseconds from durable write to applied, per sequence number (expires after an hour).
    public func revocationAcks(_ seq: Int64) -> String { prefix + "rev:acks:\(seq)" }
    /// Pub/sub: `RevocationEvent` wire text, published by the same script that made it durable.
    public var revocationChannel: String { prefix + "rev:events" }
    /// Pub/sub: `node seq latency_us`, published by a node after applying a revocation.
    public var ackChannel: String { prefix + "rev:acks" }

    // MARK: Key sets

    /// HASH: `KeySetRecord` of one issuer's key set (jwks, version, fetched_at, mac).
    public func keySet(_ issuer: String) -> String { prefix + "keys:set:" + issuer }
    /// SET of issuer names with a key-set record.
    public var keySetIssuers: String { prefix + "keys:issuers" }
    /// Pub/sub: `issuer version` after a key-set record changed.
    public var keySetChannel: String { prefix + "keys:events" }
    /// Pub/sub: `issuer kid`: a node met an unknown kid and asks the control plane to refetch.
    public var keySetRefetchChannel: String { prefix + "keys:refetch" }
    /// String with TTL: held by whoever fetches an issuer's JWKS (one fetch per throttle window, cluster-wide).
    public func keySetFetchLock(_ issuer: String) -> String { prefix + "keys:lock:" + issuer }
    /// String with TTL: a kid recently looked for and not found (negative cache).
    public func keySetMissingKid(_ issuer: String, _ kid: String) -> String { prefix + "keys:missing:" + issuer + ":" + kid }

    // MARK: Membership

    /// SET of node ids that registered; entries whose node key expired are pruned by readers.
    public var nodes: String { prefix + "nodes" }
    /// HASH with the node's description and status; expires after 3 heartbeats.
    public func node(_ id: String) -> String { prefix + "node:" + id }
    /// String with TTL: a control plane is alive (gateways then leave remote JWKS fetching to it).
    public var controlPlaneAlive: String { prefix + "control:alive" }

    // MARK: Rate limits

    /// Counter: requests admitted cluster-wide for one policy, key and fixed window.
    public func rateLimitWindow(policy: String, key: String, window: UInt64) -> String {
        prefix + "rl:" + policy + ":" + window.description + ":" + key
    }

    // MARK: Control plane

    /// String with TTL: held by the control plane running a cluster-wide chore (`task`: prune,
    /// as-rotate, …) so that two control planes side by side do it once.
    public func controlLock(_ task: String) -> String { prefix + "control:lock:" + task }

    // MARK: Built-in authorization server

    /// HASH kid → `SigningKeyRecord` JSON: the built-in issuer's signing keys, private keys
    /// sealed with AES-GCM under the key-encryption key from the control plane's config.
    public var authorizationServerKeys: String { prefix + "as:keys" }
    /// HASH (TTL: the refresh-token lifetime): one refresh token, by the hex SHA-256 of its value
    /// (the token itself is never stored): family, client, scope, audience, status, expiry.
    public func refreshToken(_ hash: String) -> String { prefix + "as:rt:" + hash }
    /// HASH (TTL: the newest member's lifetime): a refresh-token family (one grant and its
    /// rotations): client, subject, `revoked` once reuse or RFC 7009 revocation killed it.
    public func refreshFamily(_ id: String) -> String { prefix + "as:rtf:" + id }
    /// ZSET score=exp member=jti (same TTL as the family): access tokens issued from the family,
    /// revoked cluster-wide when the family dies.
    public func refreshFamilyTokens(_ id: String) -> String { prefix + "as:rtf:" + id + ":jti" }

    // MARK: Audit

    /// STREAM of admin mutations (who, what, when, from where).
    public var auditLog: String { prefix + "audit" }
}
