import PortcullisRedis
import PortcullisTestSupport
import Testing

@Suite("command connection recovery")
struct RecoveryTests {
    @Test("the client reconnects after the server restarts on the same port")
    func restart() async throws {
        try await withRedis { server, client async throws in
            _ = try await client.send("SET", "before", "1")
            try await server.restart()
            let (reply, errors) = try await eventually(timeout: .seconds(5)) { try await client.send("PING") }
            #expect(reply == .status("PONG"))
            #expect(errors.count <= 1, "at most the command in flight during the restart fails: \(errors)")
            for error in errors {
                #expect({ if case .connectionClosed = error as? RedisError { true } else { false } }(), "\(error)")
            }
            #expect(try await client.send("GET", "before") == .null, "no persistence: a really new server")
        }
    }

    @Test("the client reports refused connections while the server is down (kill -9) and recovers after")
    func killAndRestart() async throws {
        try await withRedis { server, client async throws in
            #expect(try await client.send("PING") == .status("PONG"))
            await server.kill()
            let (failure, _) = try await eventually(timeout: .seconds(5)) { () async throws -> RedisError in
                do {
                    _ = try await client.send("PING")
                    throw UnexpectedSuccess()
                } catch let error as RedisError {
                    guard case .connectionRefused = error else { throw error }
                    return error
                }
            }
            #expect(failure.description.contains("127.0.0.1:\(server.port): connection refused"))
            try await server.restart()
            let (reply, _) = try await eventually(timeout: .seconds(5)) { try await client.send("PING") }
            #expect(reply == .status("PONG"))
        }
    }

    @Test("commands in flight fail with connectionClosed when the server kills the connection")
    func killedConnection() async throws {
        try await withRedis { server, client async throws in
            let id = try #require(try await client.send("CLIENT", "ID").int)
            let blocked = Task { try await client.send("BLPOP", "never", "0") }
            try await Task.sleep(for: .milliseconds(100))
            #expect(try server.cli("CLIENT", "KILL", "ID", "\(id)") == "1")
            await #expect {
                _ = try await blocked.value
            } throws: { error in
                if case .connectionClosed = error as? RedisError { true } else { false }
            }
            #expect(try await client.send("PING") == .status("PONG"))
        }
    }

    struct UnexpectedSuccess: Error {}
}
