import Foundation

/// A real `portcullis gateway` process with its config in a temporary folder.
public final class GatewayProcess: Sendable {
    public let port: Int
    public let adminPort: Int
    public let directory: String
    public let configFile: String
    public let process: ManagedProcess

    /// Writes the config returned by `config(port, adminPort, directory)` and starts the gateway;
    /// returns once `/readyz` answers 200 (or throws with the gateway's output).
    /// `logArguments` are the `--log-level`/`--log-format` options it runs with.
    public static func start(readyTimeout: Duration = .seconds(20),
                             waitForReady: Bool = true,
                             extraFiles: [String: String] = [:],
                             logArguments: [String] = ["--log-level", "info"],
                             config: (_ port: Int, _ adminPort: Int, _ directory: String) -> String) async throws -> GatewayProcess {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-gw")
        for (name, contents) in extraFiles {
            try contents.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let port = try FreePort.allocate()
        let adminPort = try FreePort.allocate()
        let configFile = directory + "/gateway.yaml"
        try config(port, adminPort, directory).write(toFile: configFile, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(executable: PortcullisBinary.path,
                                         arguments: ["gateway", "--config", configFile] + logArguments,
                                         logFile: directory + "/gateway.log")
        let gateway = GatewayProcess(port: port, adminPort: adminPort, directory: directory, configFile: configFile, process: process)
        if waitForReady {
            do {
                try await Readiness.waitForHTTP(port: adminPort, path: "/readyz", timeout: readyTimeout)
            } catch {
                throw FixtureError("gateway did not become ready: \(error)\n--- gateway output ---\n\(process.output)")
            }
        }
        return gateway
    }

    private init(port: Int, adminPort: Int, directory: String, configFile: String, process: ManagedProcess) {
        self.port = port
        self.adminPort = adminPort
        self.directory = directory
        self.configFile = configFile
        self.process = process
    }

    /// A new connection to the public port.
    public func client(timeout: Double = 10) throws -> HTTPTestClient {
        try HTTPTestClient(port: port, timeout: timeout)
    }

    /// One request on a fresh connection.
    public func request(_ method: String = "GET", _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> HTTPTestResponse {
        let client = try client()
        defer { client.close() }
        return try client.request(method, path, headers: headers, body: body)
    }

    /// `GET path` on the admin port.
    public func admin(_ path: String) throws -> HTTPTestResponse {
        let client = try HTTPTestClient(port: adminPort)
        defer { client.close() }
        return try client.request("GET", path)
    }

    public func metrics() throws -> String {
        try admin("/metrics").text
    }

    /// `GET /readyz` on the admin port.
    public func readiness() throws -> HTTPTestResponse {
        try admin("/readyz")
    }

    public func stop() async {
        _ = await process.terminate(timeout: .seconds(10))
    }
}
