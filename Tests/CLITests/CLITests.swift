import PortcullisTestSupport
import Testing

@Suite("portcullis command line")
struct CLITests {
    @Test("--version prints the version for the root and every subcommand", arguments: [[], ["gateway"], ["control"], ["token"], ["admin"]])
    func version(_ prefix: [String]) throws {
        let result = try runCommand(PortcullisBinary.path, prefix + ["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
    }

    @Test("--help describes every subcommand", arguments: ["gateway", "control", "token", "admin"])
    func help(_ subcommand: String) throws {
        let root = try runCommand(PortcullisBinary.path, ["--help"])
        #expect(root.status == 0)
        #expect(root.stdout.contains(subcommand))
        let sub = try runCommand(PortcullisBinary.path, [subcommand, "--help"])
        #expect(sub.status == 0)
        #expect(sub.stdout.contains("USAGE: portcullis \(subcommand)"))
    }

    @Test("an unknown subcommand is a usage error")
    func unknown() throws {
        let result = try runCommand(PortcullisBinary.path, ["frobnicate"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("frobnicate"))
    }
}

@Suite("configuration secrets through the CLI")
struct ConfigSecretCLITests {
    @Test("--check resolves ${NAME} and {file:} secrets without printing them, and names an unset variable")
    func checkResolvesSecrets() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-check")
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
        try "\(secret)\n".write(toFile: directory + "/cluster.secret", atomically: true, encoding: .utf8)
        try """
        listen: 127.0.0.1:1
        cluster:
          redis: redis://gw:${PORTCULLIS_REDIS_PASSWORD}@127.0.0.1:6379/0
          secret: {file: cluster.secret}
        routes: [{name: r, path_prefix: /, upstream: {targets: [127.0.0.1:2]}}]
        """.write(toFile: directory + "/gateway.yaml", atomically: true, encoding: .utf8)
        let ok = try runCommand(PortcullisBinary.path, ["gateway", "--config", directory + "/gateway.yaml", "--check"],
                                environment: ["PORTCULLIS_REDIS_PASSWORD": "hunter2-redis"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains("configuration OK"))
        #expect(!(ok.stdout + ok.stderr).contains("hunter2-redis"))
        #expect(!(ok.stdout + ok.stderr).contains(secret))

        let unset = try runCommand(PortcullisBinary.path, ["gateway", "--config", directory + "/gateway.yaml", "--check"], environment: [:])
        #expect(unset.status != 0)
        #expect(unset.stderr.contains("PORTCULLIS_REDIS_PASSWORD"), "\(unset.stderr)")
        #expect(unset.stderr.contains("gateway.yaml:3"), "\(unset.stderr)")
    }
}
