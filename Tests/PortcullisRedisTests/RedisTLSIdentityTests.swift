import Foundation
@testable import PortcullisRedis
import PortcullisTestSupport
import Testing

/// Who a node sends its Redis password to over TLS. The attacker holds a certificate the Redis CA
/// signed for its own host (a Sentinel's, as the deployment has one CA for Redis and Sentinels):
/// it serves it from a real redis-server, and whether the node sent `AUTH` shows in that
/// server's `ACL LOG` (the node's user does not exist there, so an `AUTH` is logged as refused).
@Suite("Redis over TLS: the server's identity before AUTH", .serialized)
struct RedisTLSIdentityTests {
    static let redisName = "redis.portcullis.test"

    struct Lab {
        let authority: TestCertificateAuthority
        /// A certificate for the loopback host only, as a Sentinel's is for its own.
        let hostOnly: TestCertificateAuthority.Leaf
        /// A Redis server's: the host's names and `redisName`.
        let redis: TestCertificateAuthority.Leaf
    }

    func lab() throws -> Lab {
        let authority = try TestCertificateAuthority.make(name: "Redis CA")
        return Lab(authority: authority,
                   hostOnly: try authority.issue("sentinel-1", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]),
                   redis: try authority.issue("redis-1", dnsNames: ["localhost", Self.redisName], ipAddresses: ["127.0.0.1"]))
    }

    /// A real redis-server serving TLS with `leaf` (no client certificates asked for).
    func tlsServer(_ leaf: TestCertificateAuthority.Leaf, _ lab: Lab) async throws -> (RedisServerFixture, Int) {
        let tlsPort = try FreePort.allocate()
        let server = try await RedisServerFixture.start(extraArguments: [
            "--tls-port", "\(tlsPort)", "--tls-cert-file", leaf.certificate, "--tls-key-file", leaf.privateKey,
            "--tls-ca-cert-file", lab.authority.certificate, "--tls-auth-clients", "no",
        ])
        return (server, tlsPort)
    }

    /// The first command's error with `configuration` (nil when it succeeded).
    func firstError(_ configuration: RedisConfiguration) async -> RedisError? {
        let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
        defer { Task { await client.close() } }
        do {
            _ = try await client.send("PING")
            return nil
        } catch {
            return error as? RedisError ?? RedisError.tls("\(error)")
        }
    }

    /// `AUTH` attempts the server refused, from its ACL LOG.
    func refusedAuths(_ server: RedisServerFixture) throws -> Int {
        try server.cli("ACL", "LOG").components(separatedBy: "\n").filter { $0 == "auth" }.count
    }

    @Test("a DNS name the certificate lists is the server_name it was asked for: exact, any case, a trailing dot, or a wildcard for the whole left-most label; an IP entry or the common name is not")
    func names() throws {
        let authority = try TestCertificateAuthority.make(name: "Names CA")
        func der(_ leaf: TestCertificateAuthority.Leaf) throws -> [UInt8] {
            let pem = try String(contentsOfFile: leaf.certificate, encoding: .utf8)
            let body = pem.components(separatedBy: "\n").filter { !$0.hasPrefix("-----") }.joined()
            return [UInt8](try #require(Data(base64Encoded: body)))
        }
        let named = try der(authority.issue("redis.portcullis.test", dnsNames: ["Redis.Portcullis.Test"], ipAddresses: ["127.0.0.1"]))
        #expect(RedisServerIdentity.certificate(named, isFor: "redis.portcullis.test"))
        #expect(RedisServerIdentity.certificate(named, isFor: "REDIS.portcullis.test."))
        #expect(!RedisServerIdentity.certificate(named, isFor: "127.0.0.1"))
        #expect(!RedisServerIdentity.certificate(named, isFor: "portcullis.test"))
        #expect(!RedisServerIdentity.certificate(named, isFor: ""))
        let wildcard = try der(authority.issue("wild", dnsNames: ["*.redis.test", "*.internal"], ipAddresses: []))
        #expect(RedisServerIdentity.certificate(wildcard, isFor: "a.redis.test"))
        #expect(!RedisServerIdentity.certificate(wildcard, isFor: "redis.test"))
        #expect(!RedisServerIdentity.certificate(wildcard, isFor: "a.b.redis.test"))
        #expect(!RedisServerIdentity.certificate(wildcard, isFor: ".redis.test"))
        #expect(!RedisServerIdentity.certificate(wildcard, isFor: "redis.internal"), "a wildcard over one label covers nothing")
        // The subject's CN names the server, but only DNS entries count.
        let commonNameOnly = try der(authority.issue("cn.redis.test", dnsNames: [], ipAddresses: ["127.0.0.1"]))
        #expect(!RedisServerIdentity.certificate(commonNameOnly, isFor: "cn.redis.test"))
    }

    @Test("with server_name, a server whose certificate matches only the address connected to — as a Sentinel's own does — is refused before AUTH; one listing the name is used")
    func serverNamePinsTheServer() async throws {
        let lab = try lab()
        let (impostor, impostorPort) = try await tlsServer(lab.hostOnly, lab)
        let (redis, redisPort) = try await tlsServer(lab.redis, lab)
        func configuration(_ port: Int) throws -> RedisConfiguration {
            var configuration = try RedisConfiguration(url: "rediss://gateway:gw-secret@127.0.0.1:\(port)")
            configuration.tls = RedisTLS(caFile: lab.authority.certificate, serverName: Self.redisName)
            return configuration
        }
        try await withCleanup(impostor, { await $0.shutdown(); await redis.shutdown() }) { impostor in
            let refused = await firstError(try configuration(impostorPort))
            #expect(refused?.kind == "tls", "\(String(describing: refused))")
            #expect("\(String(describing: refused))".contains(Self.redisName), "\(String(describing: refused))")
            #expect(try refusedAuths(impostor) == 0, "the impostor was sent AUTH")
            // The real server is sent AUTH (refused there: the user exists on neither).
            let real = await firstError(try configuration(redisPort))
            #expect(real?.kind == "auth", "\(String(describing: real))")
            #expect(try refusedAuths(redis) >= 1)
        }
    }

    @Test("under rediss-sentinel://, a Sentinel that names as primary a server with its own certificate gets no node's AUTH there; the Sentinel itself is checked against its host, not server_name")
    func sentinelCannotCollectPasswords() async throws {
        let lab = try lab()
        let (impostor, impostorPort) = try await tlsServer(lab.hostOnly, lab)
        let sentinelTLSPort = try FreePort.allocate()
        let sentinel = try await SentinelFixture.sentinelOverTLS(monitoring: "127.0.0.1", port: impostorPort, masterName: "pcx",
                                                                 tlsPort: sentinelTLSPort, certificate: lab.hostOnly.certificate,
                                                                 privateKey: lab.hostOnly.privateKey, caFile: lab.authority.certificate)
        try await withCleanup(impostor, { await sentinel.shutdown(); await $0.shutdown() }) { impostor in
            var configuration = try RedisConfiguration(url: "rediss-sentinel://gateway:gw-secret@127.0.0.1:\(sentinelTLSPort)/pcx")
            configuration.tls = RedisTLS(caFile: lab.authority.certificate, serverName: Self.redisName)
            let error = await firstError(configuration)
            #expect(error?.kind == "tls", "\(String(describing: error))")
            // The Sentinel was asked (its certificate passed against its host); the primary it named was refused.
            #expect("\(String(describing: error))".contains("named by sentinel"), "\(String(describing: error))")
            #expect("\(String(describing: error))".contains("does not name \(Self.redisName)"), "\(String(describing: error))")
            #expect(try refusedAuths(impostor) == 0, "the Sentinel's primary was sent the node's AUTH")
        }
    }

    @Test("a Sentinel whose own certificate names server_name (directly or by wildcard) is refused: it could pass as the primary")
    func sentinelCertificateMustNotCarryTheName() async throws {
        let lab = try lab()
        let (redis, redisPort) = try await tlsServer(lab.redis, lab)
        let wildcard = try lab.authority.issue("sentinel-wild", dnsNames: ["localhost", "*.portcullis.test"], ipAddresses: ["127.0.0.1"])
        for certificate in [lab.redis, wildcard] {
            let sentinelTLSPort = try FreePort.allocate()
            let sentinel = try await SentinelFixture.sentinelOverTLS(monitoring: "127.0.0.1", port: redisPort, masterName: "pcx",
                                                                     tlsPort: sentinelTLSPort, certificate: certificate.certificate,
                                                                     privateKey: certificate.privateKey, caFile: lab.authority.certificate)
            var configuration = try RedisConfiguration(url: "rediss-sentinel://gateway:gw-secret@127.0.0.1:\(sentinelTLSPort)/pcx")
            configuration.tls = RedisTLS(caFile: lab.authority.certificate, serverName: Self.redisName)
            let error = await firstError(configuration)
            await sentinel.shutdown()
            #expect(error?.kind == "tls", "\(String(describing: error))")
            #expect("\(String(describing: error))".contains("could pass as the primary"), "\(String(describing: error))")
            #expect(try refusedAuths(redis) == 0, "the primary was reached through a Sentinel carrying its name")
        }
        await redis.shutdown()
    }

    @Test("a Sentinel's answer names a host and a port from 1 to 65535; a port it would wrap (70000) or an empty host is refused")
    func sentinelAnswerBounded() {
        func reply(_ host: String, _ port: String) -> RedisValue { .array([.bulkString(Array(host.utf8)), .bulkString(Array(port.utf8))]) }
        #expect(SentinelResolver.masterAddress(reply("10.0.0.5", "6380"))?.port == 6380)
        #expect(SentinelResolver.masterAddress(reply("10.0.0.5", "70000")) == nil)
        #expect(SentinelResolver.masterAddress(reply("10.0.0.5", "0")) == nil)
        #expect(SentinelResolver.masterAddress(reply("10.0.0.5", "-1")) == nil)
        #expect(SentinelResolver.masterAddress(reply("", "6380")) == nil)
        #expect(SentinelResolver.masterAddress(reply(String(repeating: "a", count: 256), "6380")) == nil)
        #expect(SentinelResolver.masterAddress(.array([.bulkString(Array("h".utf8))])) == nil)
    }
}
