import PortcullisRedis

/// `control:alive`: a control plane's word that one is running, renewed at each of its heartbeats
/// with a TTL of three. Gateways that see it leave remote JWKS fetching to the control plane.
/// The value names the control plane that set it last; it is unsigned, and only a gateway's
/// choice of who fetches rests on it.
public struct ControlPlanePresence: Sendable {
    let client: RedisClient
    let keys: ClusterKeys

    public init(client: RedisClient, keys: ClusterKeys) {
        self.client = client
        self.keys = keys
    }

    /// Says that control plane `nodeID` is running, for `ttl`.
    public func announce(nodeID: String, ttl: Duration) async throws {
        _ = try await client.send("SET", RedisArgument(keys.controlPlaneAlive), RedisArgument(nodeID), "PX",
                                  RedisArgument(max(1, ttl.wholeMilliseconds)))
    }

    /// At shutdown: withdraws the word if `nodeID` gave it last (another control plane's stays).
    public func withdraw(nodeID: String) async {
        _ = try? await client.evalScript(Self.withdrawScript, keys: [RedisArgument(keys.controlPlaneAlive)], arguments: [RedisArgument(nodeID)])
    }

    /// Whether a control plane said it is running within its TTL.
    public func isAnnounced() async throws -> Bool {
        try await client.send("EXISTS", RedisArgument(keys.controlPlaneAlive)).int == 1
    }

    /// KEYS: `control:alive`. ARGV: the node id. Deletes it only while it names that node.
    static let withdrawScript = RedisScript("""
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """)
}
