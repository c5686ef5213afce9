import Foundation
import PortcullisRedis

/// A master, one replica and one or more Sentinels (quorum 1, down-after 1 s, failover-timeout
/// 3 s) for failover tests. Every process is killed by `shutdown()` or when this object goes away.
public final class SentinelFixture: Sendable {
    public let masterName: String
    /// The server that was master at start (after a failover it may be dead or a replica).
    public let master: RedisServerFixture
    /// The server that was replica at start (promoted by a failover).
    public let replica: RedisServerFixture
    public let sentinels: [RedisConfiguration.SentinelAddress]
    private let sentinelServers: [RedisServerFixture]

    /// Starts master, replica (waits until it is in sync), then the Sentinels (waits until each
    /// knows the replica, so a failover can pick it).
    public static func start(sentinelCount: Int = 1, masterName: String = "portcullis-master",
                             password: String? = nil) async throws -> SentinelFixture {
        let master = try await RedisServerFixture.start(password: password)
        var replicaArguments = ["--replicaof", master.host, "\(master.port)"]
        if let password { replicaArguments += ["--masterauth", password] }
        let replica = try await RedisServerFixture.start(password: password, extraArguments: replicaArguments)
        try await Readiness.poll(timeout: .seconds(20), what: "replica \(replica.port) to sync with master \(master.port)") {
            try replica.cli("INFO", "replication").contains("master_link_status:up")
        }
        var sentinelServers: [RedisServerFixture] = []
        for _ in 0..<sentinelCount {
            let sentinel = try await RedisServerFixture.launch(executable: "redis-sentinel", password: nil) { port, directory in
                var config = """
                port \(port)
                bind 127.0.0.1
                protected-mode no
                dir \(directory)
                sentinel monitor \(masterName) \(master.host) \(master.port) 1
                sentinel down-after-milliseconds \(masterName) 1000
                sentinel failover-timeout \(masterName) 3000
                sentinel parallel-syncs \(masterName) 1

                """
                if let password { config += "sentinel auth-pass \(masterName) \(password)\n" }
                let path = directory + "/sentinel.conf"
                try config.write(toFile: path, atomically: true, encoding: .utf8)
                return [path]
            }
            sentinelServers.append(sentinel)
        }
        for sentinel in sentinelServers {
            try await Readiness.poll(timeout: .seconds(20), what: "sentinel \(sentinel.port) to discover replica \(replica.port)") {
                try sentinel.cli("SENTINEL", "replicas", masterName).contains("\(replica.port)")
            }
        }
        return SentinelFixture(masterName: masterName, master: master, replica: replica, sentinelServers: sentinelServers)
    }

    private init(masterName: String, master: RedisServerFixture, replica: RedisServerFixture, sentinelServers: [RedisServerFixture]) {
        self.masterName = masterName
        self.master = master
        self.replica = replica
        self.sentinelServers = sentinelServers
        self.sentinels = sentinelServers.map { .init(host: $0.host, port: $0.port) }
    }

    /// A client configuration that finds the master through these Sentinels.
    public func configuration(database: Int = 0, commandTimeout: Duration = .seconds(2)) -> RedisConfiguration {
        RedisConfiguration(endpoint: .sentinel(masterName: masterName, sentinels: sentinels),
                           password: master.password, database: database, commandTimeout: commandTimeout)
    }

    /// `redis-sentinel://host1:port1,…/masterName`
    public var url: String {
        "redis-sentinel://" + sentinels.map { "\($0.host):\($0.port)" }.joined(separator: ",") + "/" + masterName
    }

    /// The master's port as the first Sentinel reports it now.
    public func currentMasterPort() throws -> Int? {
        let reply = try sentinelServers[0].cli("SENTINEL", "get-master-addr-by-name", masterName)
        return reply.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// One Sentinel serving TLS on `tlsPort` (and plain text on its fixture's port, for `cli`)
    /// with `certificate`, monitoring the TLS server at `host:port` as `masterName` — whatever that
    /// server is: a Sentinel names what it was told to, or what its owner wants.
    public static func sentinelOverTLS(monitoring host: String, port: Int, masterName: String, tlsPort: Int,
                                       certificate: String, privateKey: String, caFile: String) async throws -> RedisServerFixture {
        try await RedisServerFixture.launch(executable: "redis-sentinel", password: nil) { plainPort, directory in
            let config = """
            port \(plainPort)
            bind 127.0.0.1
            protected-mode no
            dir \(directory)
            tls-port \(tlsPort)
            tls-cert-file \(certificate)
            tls-key-file \(privateKey)
            tls-ca-cert-file \(caFile)
            tls-auth-clients no
            tls-replication yes
            sentinel monitor \(masterName) \(host) \(port) 1
            sentinel down-after-milliseconds \(masterName) 60000

            """
            let path = directory + "/sentinel.conf"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            return [path]
        }
    }

    /// Kills every process and removes their folders.
    public func shutdown() async {
        for sentinel in sentinelServers { await sentinel.shutdown() }
        await replica.shutdown()
        await master.shutdown()
    }
}
