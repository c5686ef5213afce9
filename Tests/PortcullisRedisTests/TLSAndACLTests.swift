import Foundation
import PortcullisRedis
import PortcullisTestSupport
import Testing

/// The client against a real redis-server serving TLS (with `tls-auth-clients yes`) and ACL users.
@Suite("Redis over TLS and with ACL users", .serialized)
struct TLSAndACLTests {
    struct Setup {
        let server: RedisServerFixture
        let tlsPort: Int
        let authority: TestCertificateAuthority
        let client: TestCertificateAuthority.Leaf
    }

    /// A server whose certificate names localhost and 127.0.0.1, requiring client certificates.
    func withTLSServer(dnsNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1"],
                       _ body: (Setup) async throws -> Void) async throws {
        let authority = try TestCertificateAuthority.make()
        let serverLeaf = try authority.issue("redis-server", dnsNames: dnsNames, ipAddresses: ipAddresses)
        let clientLeaf = try authority.issue("gateway-1")
        let tlsPort = try FreePort.allocate()
        let server = try await RedisServerFixture.start(extraArguments: [
            "--tls-port", "\(tlsPort)", "--tls-cert-file", serverLeaf.certificate, "--tls-key-file", serverLeaf.privateKey,
            "--tls-ca-cert-file", authority.certificate, "--tls-auth-clients", "yes",
        ])
        try await withCleanup(server, { await $0.shutdown() }) { server in
            try await body(Setup(server: server, tlsPort: tlsPort, authority: authority, client: clientLeaf))
        }
    }

    func client(_ configuration: RedisConfiguration, _ body: (RedisClient) async throws -> Void) async throws {
        let client = RedisClient(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
        try await withCleanup(client, { await $0.close() }) { try await body($0) }
    }

    /// The error the first command fails with.
    func firstError(_ configuration: RedisConfiguration) async throws -> RedisError? {
        var error: RedisError?
        try await client(configuration) { client in
            do {
                _ = try await client.send("PING")
            } catch let failure as RedisError {
                error = failure
            }
        }
        return error
    }

    @Test("rediss:// with the cluster's CA and a client certificate carries commands and pub/sub")
    func mutualTLS() async throws {
        try await withTLSServer { setup in
            for host in ["127.0.0.1", "localhost"] {
                var configuration = try RedisConfiguration(url: "rediss://\(host):\(setup.tlsPort)")
                configuration.tls?.caFile = setup.authority.certificate
                configuration.tls?.certificateFile = setup.client.certificate
                configuration.tls?.privateKeyFile = setup.client.privateKey
                try await client(configuration) { client in
                    _ = try await client.send("SET", "k", RedisArgument(host))
                    #expect(try await client.send("GET", "k").string == host)
                }
                let subscriber = RedisSubscriber(configuration: configuration, eventLoopGroup: TestEnvironment.group, logger: TestEnvironment.logger)
                let recorder = EventRecorder(subscriber.events(channels: ["c"], patterns: []))
                try await recorder.wait(for: "connected") { events in
                    events.contains { if case .connected = $0 { true } else { false } }
                }
                _ = try setup.server.cli("PUBLISH", "c", "over-tls")
                try await recorder.wait(for: "the message") { events in
                    events.contains { if case .message(_, let payload) = $0 { payload == Array("over-tls".utf8) } else { false } }
                }
                await subscriber.close()
            }
        }
    }

    @Test("a server certificate from another CA, or for another name, is refused with a typed TLS error")
    func untrustedServer() async throws {
        try await withTLSServer { setup in
            let stranger = try TestCertificateAuthority.make(name: "Someone Else")
            var wrongCA = try RedisConfiguration(url: "rediss://127.0.0.1:\(setup.tlsPort)")
            wrongCA.tls = RedisTLS(caFile: stranger.certificate, certificateFile: setup.client.certificate, privateKeyFile: setup.client.privateKey)
            let caError = try await firstError(wrongCA)
            #expect(caError?.kind == "tls", "\(String(describing: caError))")

        }
        // A certificate naming only redis.internal: reached by address, only the server-name
        // override makes it valid, and another name is refused.
        try await withTLSServer(dnsNames: ["redis.internal"], ipAddresses: []) { setup in
            func configuration(serverName: String?) throws -> RedisConfiguration {
                var configuration = try RedisConfiguration(url: "rediss://127.0.0.1:\(setup.tlsPort)")
                configuration.tls = RedisTLS(caFile: setup.authority.certificate, certificateFile: setup.client.certificate,
                                             privateKeyFile: setup.client.privateKey, serverName: serverName)
                return configuration
            }
            #expect(try await firstError(configuration(serverName: "redis.internal")) == nil)
            let nameError = try await firstError(configuration(serverName: "redis.other.example"))
            #expect(nameError?.kind == "tls", "\(String(describing: nameError))")
            let noName = try await firstError(configuration(serverName: nil))
            #expect(noName?.kind == "tls", "\(String(describing: noName))")
        }
    }

    @Test("without a client certificate a server requiring one refuses the connection")
    func clientCertificateRequired() async throws {
        try await withTLSServer { setup in
            var configuration = try RedisConfiguration(url: "rediss://127.0.0.1:\(setup.tlsPort)")
            configuration.tls?.caFile = setup.authority.certificate
            let error = try await firstError(configuration)
            #expect(error != nil)
            #expect(["tls", "closed"].contains(error?.kind ?? ""), "\(String(describing: error))")
        }
    }

    @Test("a TLS file that cannot be read fails every attempt with a TLS error naming it")
    func unreadableFile() async throws {
        var configuration = try RedisConfiguration(url: "rediss://127.0.0.1:1")
        configuration.tls?.caFile = "/nonexistent/ca.pem"
        let error = try await firstError(configuration)
        #expect(error?.kind == "tls")
        #expect("\(String(describing: error))".contains("/nonexistent/ca.pem"))
    }

    @Test("ACL users: AUTH user password; a wrong password is a typed authentication error without the password")
    func aclUsers() async throws {
        try await withRedis { server, _ in
            try server.cli("ACL", "SETUSER", "gateway", "on", ">gw-secret", "~*", "+@all")
            try await client(try RedisConfiguration(url: "redis://gateway:gw-secret@127.0.0.1:\(server.port)")) { client in
                let user = try await client.send("ACL", "WHOAMI").string
                #expect(user == "gateway")
            }
            let error = try await firstError(try RedisConfiguration(url: "redis://gateway:wrong-secret@127.0.0.1:\(server.port)"))
            #expect(error?.kind == "auth", "\(String(describing: error))")
            #expect(!"\(String(describing: error))".contains("wrong-secret"))
            #expect("\(String(describing: error))".contains("gateway"))
        }
    }

    @Test("rediss:// and rediss-sentinel:// parse to TLS; redis:// does not")
    func urls() throws {
        #expect(try RedisConfiguration(url: "rediss://u:p@h:6380/2").tls != nil)
        #expect(try RedisConfiguration(url: "rediss-sentinel://s1,s2/mymaster").tls != nil)
        #expect(try RedisConfiguration(url: "redis://h").tls == nil)
        #expect(try RedisConfiguration(url: "redis-sentinel://s1/m").tls == nil)
    }
}
