import Foundation
import PortcullisTestSupport
import Testing

@Suite("test fixtures")
struct FixtureTests {
    @Test("FreePort hands out a port nothing listens on")
    func freePort() async throws {
        let port = try FreePort.allocate()
        #expect((1...65535).contains(port))
        await #expect(throws: (any Error).self) {
            try await Readiness.waitForPort(port: port, timeout: .milliseconds(100))
        }
    }

    @Test("redis-server fixture: starts, answers redis-cli, restarts on the same port, is killed")
    func redisServer() async throws {
        let server = try await RedisServerFixture.start(password: "s3cr:t@")
        try await using(server) { server async throws in
            #expect(server.url == "redis://:s3cr%3At%40@127.0.0.1:\(server.port)")
            #expect(try server.cli("SET", "k", "v") == "OK")
            #expect(try server.cli("GET", "k") == "v")
            let firstPid = try #require(server.pid)
            try await server.restart()
            let secondPid = try #require(server.pid)
            #expect(firstPid != secondPid)
            #expect(try server.cli("PING") == "PONG")
            #expect(try server.cli("GET", "k") == "", "no persistence by default")
            await server.kill()
            #expect(server.pid == nil)
            #expect(kill(secondPid, 0) != 0, "the process is gone and reaped")
        }
    }

    @Test("persistence keeps data across a restart")
    func persistence() async throws {
        let server = try await RedisServerFixture.start(persistence: true)
        try await using(server) { server async throws in
            try server.cli("SET", "kept", "yes")
            try await server.restart()
            #expect(try server.cli("GET", "kept") == "yes")
        }
    }

    @Test("ManagedProcess captures output, reports the exit status and kills in deinit")
    func managedProcess() async throws {
        let echo = try ManagedProcess(executable: "/bin/sh", arguments: ["-c", "echo hello; echo oops >&2; exit 3"])
        #expect(await echo.waitForExit(timeout: .seconds(10)) == 3)
        #expect(echo.output.contains("hello"))
        #expect(echo.output.contains("oops"))
        #expect(!echo.isRunning)

        let sleeper = try ManagedProcess(executable: "sleep", arguments: ["30"])
        #expect(sleeper.isRunning)
        #expect(await sleeper.terminate(timeout: .seconds(5)) == 128 + SIGTERM)

        var leaked: ManagedProcess? = try ManagedProcess(executable: "sleep", arguments: ["30"])
        let pid = try #require(leaked?.pid)
        leaked = nil
        #expect(kill(pid, 0) != 0, "deinit killed and reaped the child")
    }

    @Test("Readiness.waitForHTTP sees the status of a real HTTP server")
    func readinessHTTP() async throws {
        let port = try FreePort.allocate()
        let server = try ManagedProcess(executable: "python3",
                                        arguments: ["-m", "http.server", "\(port)", "--bind", "127.0.0.1",
                                                    "--directory", FileManager.default.temporaryDirectory.path])
        try await using(server) { server async throws in
            try await Readiness.waitForHTTP(port: port, path: "/", timeout: .seconds(20))
            try await Readiness.waitForHTTP(port: port, path: "/definitely-missing", status: 404, timeout: .seconds(5))
            await #expect(throws: (any Error).self) {
                try await Readiness.waitForHTTP(port: port, path: "/definitely-missing", status: 200, timeout: .milliseconds(200))
            }
        }
    }
}
