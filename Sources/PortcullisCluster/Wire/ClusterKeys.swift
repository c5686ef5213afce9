/// Every Redis key and channel the cluster uses — the whole Redis schema in one place.
/// `prefix` (default `portcullis:`) lets several clusters share one Redis.
/// `cluster/redis/users.acl` grants each role exactly the keys, channels and commands it uses:
/// a new key, channel or command must be added there too (the end-to-end case of
/// `RedisACLTests` fails on any command Redis refuses while it runs).
public struct ClusterKeys: Sendable {
    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix
    }

    // MARK: Revocations
    //
    // The signed log is the whole revocation state: a node rebuilds its set only from log
    // entries whose MAC verifies. The other keys are indexes for the control plane.

    /// String: the signed `RevocationHead` (epoch, last sequence, prune floor, beat). The write
    /// script replaces it only if it is still the head the writer read (compare-and-set).
    public var revocationHead: String { prefix + "rev:head" }
    /// ZSET score=seq member=`RevocationEvent` wire text: every change still in force, in order.
    public var revocationLog: String { prefix + "rev:log" }
    /// ZSET score=prune time (unix seconds) member=seq: when each log entry may be pruned.
    public var revocationExpiry: String { prefix + "rev:expiry" }
    /// HASH revocation id → sequence number (an index; the entry found is checked for its id).
    public var revocationIDs: String { prefix + "rev:ids" }
    /// HASH node id → `NodeAck` wire text, per sequence number (expires after an hour).
    public func revocationAcks(_ seq: Int64) -> String { prefix + "rev:acks:\(seq)" }
    /// Pub/sub: `RevocationEvent` wire text, one line per change (a batch publishes its lines in
    /// one message), published by the same script that made it durable.
    public var revocationChannel: String { prefix + "rev:events" }
    /// Pub/sub: `NodeAck` wire text, published by a node after applying revocations.
    public var ackChannel: String { prefix + "rev:acks" }

    // MARK: Key sets

    /// HASH: `KeySetRecord` of one issuer's key set (issuer, jwks, version, serial, fetched_at, mac).
    public func keySet(_ issuer: String) -> String { prefix + "keys:set:" + issuer }
    /// Pub/sub: `KeySetAnnouncement` (`<version> <issuer>`) after a key-set record changed.
    public var keySetChannel: String { prefix + "keys:events" }
    /// Pub/sub: `KeyRefetchRequest` (`<kid> <issuer>`): a node met an unknown kid and asks the
    /// control plane to refetch.
    public var keySetRefetchChannel: String { prefix + "keys:refetch" }
    /// String with TTL: held by whoever fetches an issuer's JWKS (one fetch per throttle window, cluster-wide).
    public func keySetFetchLock(_ issuer: String) -> String { prefix + "keys:lock:" + issuer }
    /// String with TTL: a kid recently looked for and not found (negative cache).
    public func keySetMissingKid(_ issuer: String, _ kid: String) -> String { prefix + "keys:missing:" + issuer + ":" + kid }

    // MARK: Membership

    /// SET of node ids that registered; entries whose node key expired are pruned by readers.
    public var nodes: String { prefix + "nodes" }
    /// HASH: the node's signed `NodeRecord` and its latest `NodeAck`; expires after 3 heartbeats.
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
    /// rotations): client, subject, `revoked` once reuse or RFC 7009 revocation killed it. Its
    /// id is the `sid` of the access tokens issued in it; a signed session revocation revokes them.
    public func refreshFamily(_ id: String) -> String { prefix + "as:rtf:" + id }
    /// HASH (TTL: 60 s while unused, then the refresh-token lifetime): one authorization code, by
    /// the hex SHA-256 of its value: client, redirect URI, user, scope, PKCE challenge, `status`
    /// (`active`, `used`) and, once redeemed, the tokens issued from it (revoked if it comes back).
    public func authorizationCode(_ hash: String) -> String { prefix + "as:code:" + hash }
    /// HASH (TTL: 10 min before sign-in, then the session lifetime): a login-page session, by the
    /// hex SHA-256 of its cookie value: CSRF token, signed-in user, sign-in time. The operator
    /// console's sessions use the same shape under `console:<hash>`, so that neither kind of
    /// cookie opens the other.
    public func loginSession(_ hash: String) -> String { prefix + "as:session:" + hash }
    /// HASH client_id → space-separated scopes: what a user has consented to, per client.
    public func consent(_ username: String) -> String { prefix + "as:consent:" + username }
    /// ZSET (TTL: the refresh-token lifetime) of what was issued under one user's consent to one
    /// client, by the hex SHA-256 of `username \n client_id`: members `fam:<family>` (score: expiry),
    /// marked revoked when the user revokes that consent.
    public func consentGrants(_ hash: String) -> String { prefix + "as:grants:" + hash }
    /// STRING counter (TTL: the throttle window): failed sign-ins for a username or a client
    /// address (`kind` = `user` or `addr`), or failed console sign-ins per address (`console-addr`).
    public func loginFailures(_ kind: String, _ subject: String) -> String { prefix + "as:throttle:" + kind + ":" + subject }

    // MARK: Audit

    /// STREAM of admin mutations (who, what, when, from where).
    public var auditLog: String { prefix + "audit" }
}
