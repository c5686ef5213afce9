import PortcullisCluster
import PortcullisJOSE
import PortcullisRedis

/// Whether a verified token is revoked, read straight from the revocation snapshot in Redis
/// (introspection answers from the source of truth rather than a node's copy).
struct RevocationLookup: Sendable {
    let client: RedisClient
    let keys: ClusterKeys

    func isRevoked(_ token: VerifiedToken) async throws -> Bool {
        var commands: [[RedisArgument]] = []
        if let jti = token.jwtID { commands.append(["ZSCORE", RedisArgument(keys.revokedJTIs), RedisArgument(jti)]) }
        var cutoffs = 0
        if let subject = token.subject {
            commands.append(["HMGET", RedisArgument(keys.subjectCutoffs), RedisArgument("*|" + subject), RedisArgument(token.issuer + "|" + subject)])
            cutoffs += 1
        }
        if let client = token.clientID {
            commands.append(["HMGET", RedisArgument(keys.clientCutoffs), RedisArgument("*|" + client), RedisArgument(token.issuer + "|" + client)])
            cutoffs += 1
        }
        if let kid = token.keyID {
            commands.append(["HMGET", RedisArgument(keys.revokedKeys), RedisArgument("*|" + kid), RedisArgument(token.issuer + "|" + kid)])
        }
        guard !commands.isEmpty else { return false }
        let replies = try await client.pipeline(commands)
        var index = 0
        if token.jwtID != nil {
            if !(try replies[0].get().isNull) { return true }
            index = 1
        }
        let issuedAt = token.issuedAt ?? Int64.min
        for _ in 0..<cutoffs {
            let values = try replies[index].get().array ?? []
            if values.contains(where: { ($0.int ?? Int64.min) > issuedAt }) { return true }
            index += 1
        }
        if token.keyID != nil {
            let values = try replies[index].get().array ?? []
            if values.contains(where: { !$0.isNull }) { return true }
        }
        return false
    }
}
