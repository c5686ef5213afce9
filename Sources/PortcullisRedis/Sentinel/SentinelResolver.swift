import Logging
import NIOCore

/// Finds the current master through Sentinel: asks each Sentinel in turn
/// (`SENTINEL get-master-addr-by-name`), connects to the address it names and accepts it only if
/// `ROLE` says "master". Runs on every (re)connect, so a failover is followed as soon as the
/// Sentinels know about it.
struct SentinelResolver {
    let masterName: String
    let sentinels: [RedisConfiguration.SentinelAddress]
    let connector: RedisConnector

    func connectToMaster(on eventLoop: any EventLoop) async throws -> RedisConnection {
        var failures: [String] = []
        var kinds: Set<String> = []
        var triedAddresses: Set<String> = []
        for sentinel in sentinels {
            let master: (host: String, port: Int)
            do {
                guard let named = try await askForMaster(sentinel, on: eventLoop) else {
                    failures.append("sentinel \(sentinel) does not know master '\(masterName)'")
                    continue
                }
                master = named
            } catch {
                failures.append("sentinel \(describe(error))")
                kinds.insert((error as? RedisError)?.kind ?? "other")
                continue
            }
            let label = formatHostPort(master.host, master.port)
            guard triedAddresses.insert(label).inserted else { continue }
            do {
                let connection = try await connector.open(.tcp(host: master.host, port: master.port), requireMaster: true, on: eventLoop)
                connector.logger.debug("Sentinel resolved the Redis master",
                                       metadata: ["redis.master": "\(masterName)", "redis.address": "\(label)", "redis.sentinel": "\(sentinel)"])
                return connection
            } catch {
                failures.append("master '\(masterName)' at \(label) (named by sentinel \(sentinel)): \(describe(error))")
                kinds.insert((error as? RedisError)?.kind ?? "other")
            }
        }
        let message = "no reachable master '\(masterName)' through Sentinel: " + failures.joined(separator: "; ")
        // When every attempt failed the same way on TLS or AUTH, that is the fault to report (and
        // count): a wrong CA or password does not heal by trying other Sentinels.
        switch kinds {
        case ["tls"]: throw RedisError.tls(message)
        case ["auth"]: throw RedisError.authentication(message)
        default: throw RedisError.sentinel(message)
        }
    }

    private func describe(_ error: any Error) -> String {
        (error as? RedisError)?.message ?? "\(error)"
    }

    /// The address a Sentinel names for the master, or nil if it does not know the name.
    private func askForMaster(_ sentinel: RedisConfiguration.SentinelAddress, on eventLoop: any EventLoop) async throws -> (host: String, port: Int)? {
        let connection = try await connector.openSentinel(.tcp(host: sentinel.host, port: sentinel.port), on: eventLoop)
        defer { connection.close(reason: .connectionClosed("\(sentinel): done")) }
        let reply = try await connection.send(["SENTINEL", "get-master-addr-by-name", RedisArgument(masterName)])
        if reply.isNull { return nil }
        guard let address = Self.masterAddress(reply) else {
            throw RedisError.protocolError("\(sentinel): unexpected reply to SENTINEL get-master-addr-by-name: \(String(describing: reply).prefix(200))")
        }
        return address
    }

    /// The host and port of a `SENTINEL get-master-addr-by-name` reply; nil unless it is two
    /// strings, a host name of 1 to 255 bytes and a port from 1 to 65535 (a larger number would
    /// wrap to another port when connecting).
    static func masterAddress(_ reply: RedisValue) -> (host: String, port: Int)? {
        guard let parts = reply.array, parts.count == 2, let host = parts[0].string, let port = parts[1].int,
              (1...65535).contains(port), !host.isEmpty, host.utf8.count <= 255 else { return nil }
        return (host, Int(port))
    }
}
