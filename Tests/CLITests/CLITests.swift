import Foundation
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
        #expect(result.status == 2)
        #expect(result.stderr.contains("frobnicate"))
    }

    /// docs/operations.md, "Exit status": one table for every subcommand.
    @Test("exit status: 2 for usage and configuration errors in every subcommand, 1 when the answer is no or the work failed", arguments: [
        (["gateway", "--frobnicate"], 2),
        (["gateway", "--config", "/nonexistent/gateway.yaml", "--check"], 2),
        (["control", "--frobnicate"], 2),
        (["token", "verify"], 2),
        (["token", "inspect", "--frobnicate"], 2),
        (["admin", "revoke"], 2),
        (["admin", "nodes", "--frobnicate"], 2),
        (["token", "inspect", "not-a-jwt"], 1),
        (["admin", "nodes", "--endpoint", "http://127.0.0.1:1", "--token", "t"], 1),
    ] as [([String], Int32)])
    func exitStatus(_ arguments: [String], _ expected: Int32) throws {
        let result = try runCommand(PortcullisBinary.path, arguments)
        #expect(result.status == expected, "\(arguments): \(result.stderr)")
        #expect(!result.stderr.isEmpty, "a failure says why")
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

@Suite("portcullis hash-password")
struct HashPasswordTests {
    @Test("prints a self-describing scrypt hash (N=2^17, r=8, p=1) that Python's hashlib.scrypt (OpenSSL) reproduces; no input is a usage error")
    func hashPassword() throws {
        let result = try runCommand(PortcullisBinary.path, ["hash-password"], stdin: "correct horse battery\n")
        #expect(result.status == 0, "\(result.stderr)")
        let hash = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hash.hasPrefix("$scrypt$ln=17,r=8,p=1$"))
        #expect(!result.stdout.contains("correct horse"))
        let check = try runCommand("/usr/bin/env", ["python3", "-c", """
        import base64, hashlib, sys
        _, alg, params, salt, key = sys.argv[1].split('$')
        pad = lambda s: base64.b64decode(s + '=' * (-len(s) % 4))
        p = dict(x.split('=') for x in params.split(','))
        derived = hashlib.scrypt(sys.argv[2].encode(), salt=pad(salt), n=2 ** int(p['ln']), r=int(p['r']), p=int(p['p']), maxmem=2 ** 28, dklen=len(pad(key)))
        print('match' if derived == pad(key) else 'mismatch')
        """, hash, "correct horse battery"])
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "match", "\(check.stdout)\(check.stderr)")

        let empty = try runCommand(PortcullisBinary.path, ["hash-password"], stdin: "")
        #expect(empty.status == 2)
        #expect(empty.stderr.contains("no password"), "\(empty.stderr)")
    }
}

/// `--check` does what start-up does short of binding ports and connecting (docs/operations.md,
/// "Exit status"): files the configuration names are loaded, and a problem exits 2 naming the key.
@Suite("--check loads what start-up loads")
struct CheckCLITests {
    static let route = "routes: [{name: r, path_prefix: /, upstream: {targets: [127.0.0.1:2]}}]"

    @Test("gateway --check: a missing certificate, a missing jwks_file, a bad Redis URL or a tracing CA file that is missing or not PEM exits 2 naming the key; start-up says the same", arguments: [
        ("tls: {certificate_chain: missing.pem, private_key: missing.key}", "tls"),
        ("issuers: [{name: i, issuer: https://i.test, audiences: [a], algorithms: [ES256], jwks_file: missing.json}]", "issuers[0].jwks_file"),
        ("cluster: {redis: 'http://127.0.0.1:6379', secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA}", "cluster.redis"),
        ("tracing: {enabled: true, ca_file: missing.pem}", "tracing.ca_file"),
        ("tracing: {enabled: true, ca_file: gateway.yaml}", "tracing.ca_file"),
    ])
    func gatewayCheck(_ section: String, _ key: String) throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-check")
        let file = directory + "/gateway.yaml"
        try "listen: 127.0.0.1:\(try FreePort.allocate())\nadmin_listen: 127.0.0.1:\(try FreePort.allocate())\n\(section)\n\(Self.route)\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let check = try runCommand(PortcullisBinary.path, ["gateway", "--config", file, "--check"])
        #expect(check.status == 2, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.contains("gateway.yaml"), "\(check.stderr)")
        #expect(check.stderr.contains(" \(key):"), "\(check.stderr)")
        #expect(!check.stdout.contains("configuration OK"))
        let start = try runCommand(PortcullisBinary.path, ["gateway", "--config", file])
        #expect(start.status == 2, "\(start.stdout)\(start.stderr)")
        #expect((start.stdout + start.stderr).contains(key))
    }

    @Test("a secret file other users of the host can read (the cluster secret, a TLS private key) draws a warning naming its key, path and mode from --check and at start; at 0600 or 0640 none")
    func secretFileModes() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-secret-modes")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let leaf = try TestCertificateAuthority.make().issue("gateway")
        let secret = directory + "/cluster.secret"
        try "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA\n".write(toFile: secret, atomically: true, encoding: .utf8)
        func chmod(_ path: String, _ mode: Int) throws {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }
        let file = directory + "/gateway.yaml"
        try """
        listen: 127.0.0.1:\(try FreePort.allocate())
        admin_listen: 127.0.0.1:\(try FreePort.allocate())
        tls: {certificate_chain: \(leaf.certificate), private_key: \(leaf.privateKey)}
        cluster: {redis: 'redis://127.0.0.1:1', secret_file: \(secret)}
        \(Self.route)
        """.write(toFile: file, atomically: true, encoding: .utf8)
        try chmod(secret, 0o644)
        try chmod(leaf.privateKey, 0o604)
        let exposed = try runCommand(PortcullisBinary.path, ["gateway", "--config", file, "--check"])
        #expect(exposed.status == 0, "\(exposed.stdout)\(exposed.stderr)")
        #expect(exposed.stderr.contains("warning: cluster.secret_file \(secret) has mode 0644: every user of this host can read it"), "\(exposed.stderr)")
        #expect(exposed.stderr.contains("tls.private_key \(leaf.privateKey) has mode 0604"), "\(exposed.stderr)")
        // At start, the same in the log (the node goes on: a Kubernetes Secret is mounted 0644 by default).
        let started = try await GatewayProcess.start(waitForReady: false) { _, _, _ in
            (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        }
        defer { Task { await started.stop() } }
        #expect(try await Poll.until(timeout: .seconds(20)) { started.process.output.contains("secret file readable by others") })
        #expect(started.process.output.contains("cluster.secret_file \(secret) has mode 0644"), "\(started.process.output)")
        await started.stop()
        try chmod(secret, 0o600)
        try chmod(leaf.privateKey, 0o640)
        let closed = try runCommand(PortcullisBinary.path, ["gateway", "--config", file, "--check"])
        #expect(closed.status == 0 && !closed.stderr.contains("warning"), "\(closed.stderr)")
    }

    @Test("control --check: a certificate that cannot be read exits 2 naming admin_tls")
    func controlCheck() throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-check")
        let file = directory + "/control.yaml"
        try """
        cluster: {redis: 'redis://127.0.0.1:1', secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA}
        admin_tokens: [{name: ops, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
        admin_tls: {certificate_chain: missing.pem, private_key: missing.key}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try runCommand(PortcullisBinary.path, ["control", "--config", file, "--check"])
        #expect(check.status == 2, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.range(of: #"control\.yaml(:\d+:\d+)?: admin_tls:"#, options: .regularExpression) != nil, "\(check.stderr)")
        #expect(check.stderr.contains("missing.pem"), "\(check.stderr)")
    }

    @Test("control --check and start: a key-encryption key that is a symlink to nothing, or not 32 bytes, exits 2 naming the file (start-up used to crash on the symlink)", arguments: [
        "symlink", "malformed",
    ])
    func keyEncryptionKeyCheck(_ shape: String) throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-kek")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kek = directory + "/kek.secret"
        if shape == "symlink" {
            try FileManager.default.createSymbolicLink(atPath: kek, withDestinationPath: directory + "/nowhere/kek.secret")
        } else {
            try "c2hvcnQ\n".write(toFile: kek, atomically: true, encoding: .utf8)
        }
        let file = directory + "/control.yaml"
        try """
        listen: 127.0.0.1:\(try FreePort.allocate())
        admin_listen: 127.0.0.1:\(try FreePort.allocate())
        cluster: {redis: 'redis://127.0.0.1:1', secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA}
        admin_tokens: [{name: ops, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
        authorization_server:
          issuer: http://127.0.0.1:1
          audience: api
          key_encryption_key_file: kek.secret
          clients: [{client_id: c, secret_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, scopes: [a]}]
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try runCommand(PortcullisBinary.path, ["control", "--config", file, "--check"])
        #expect(check.status == 2, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.contains("kek.secret"), "\(check.stderr)")
        let start = try runCommand(PortcullisBinary.path, ["control", "--config", file])
        #expect(start.status == 2, "\(start.stdout)\(start.stderr)")
        #expect((start.stdout + start.stderr).contains("key-encryption key"), "\(start.stdout)\(start.stderr)")
    }

    @Test("portcullis admin will not send a token over plain http to an address off the machine", arguments: [
        "http://192.0.2.10:9001", "http://admin.example:9001", "http://127.0.0.1.example:9001", "http://127.0.0.+1:9001", "HTTP://[::2]:9001",
    ])
    func adminTokenNotInClear(_ endpoint: String) throws {
        let result = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", endpoint, "--token", "t0ken"])
        #expect(result.status == 2, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("refusing to send the admin token in clear"), "\(result.stderr)")
    }

    @Test("portcullis admin warns on stderr when the token comes from --token (the process list shows it), not when it comes from a file or the environment")
    func adminTokenOptionWarns() throws {
        let endpoint = "http://127.0.0.1:\(try FreePort.allocate())"
        let folder = try TemporaryDirectory.make(prefix: "portcullis-token")
        try "t0ken\n".write(toFile: folder + "/token", atomically: true, encoding: .utf8)
        let warning = "--token shows the admin token to every local user in the process list"
        let option = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", endpoint, "--token", "t0ken"])
        #expect(option.stderr.contains(warning), "\(option.stderr)")
        let file = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", endpoint, "--token-file", folder + "/token"])
        let environment = try runCommand(PortcullisBinary.path, ["admin", "status", "--endpoint", endpoint],
                                         environment: ["PORTCULLIS_ADMIN_TOKEN": "t0ken"])
        for quiet in [file, environment] {
            #expect(quiet.status != 0 && !quiet.stderr.isEmpty, "no server listens: it fails, and says why")
            #expect(!quiet.stderr.contains(warning), "\(quiet.stderr)")
        }
    }

    @Test("exit status 1: a gateway whose configuration loads but whose port is taken")
    func portTaken() async throws {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-check")
        let file = directory + "/gateway.yaml"
        let taken = try await TestUpstream.start()
        defer { Task { await taken.stop() } }
        try "listen: \(taken.address)\nadmin_listen: 127.0.0.1:\(try FreePort.allocate())\n\(Self.route)\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try runCommand(PortcullisBinary.path, ["gateway", "--config", file, "--check"]).status == 0)
        let start = try runCommand(PortcullisBinary.path, ["gateway", "--config", file])
        #expect(start.status == 1, "\(start.stdout)\(start.stderr)")
        #expect((start.stdout + start.stderr).contains("cannot listen"))
    }
}
