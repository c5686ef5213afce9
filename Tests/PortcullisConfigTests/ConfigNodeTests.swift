import Foundation
@testable import PortcullisConfig
import Testing

@Suite("YAML configuration reader")
struct ConfigNodeTests {
    let yaml = """
    listen: 127.0.0.1:8080
    limits:
      max_header_bytes: 16KiB
      idle_timeout: 250ms
    routes:
      - path: /api
        methods: [GET, POST]
      - path: /admin
        audience: wrong
    """

    @Test("values decode with units")
    func decodes() throws {
        var root = try ConfigNode.parse(yaml: yaml, file: "gw.yaml").mapping()
        #expect(try root.required("listen").string() == "127.0.0.1:8080")
        var limits = try root.required("limits").mapping()
        #expect(try limits.required("max_header_bytes").byteCount() == 16384)
        #expect(try limits.required("idle_timeout").duration() == .milliseconds(250))
        try limits.finish()
        let routes = try root.required("routes").sequence()
        var first = try routes[0].mapping()
        #expect(try first.required("methods").stringList() == ["GET", "POST"])
    }

    @Test("an unknown key names the file, line and key path")
    func unknownKey() throws {
        var root = try ConfigNode.parse(yaml: yaml, file: "gw.yaml").mapping()
        let routes = try root.required("routes").sequence()
        var second = try routes[1].mapping()
        _ = second.optional("path")
        let error = #expect(throws: ConfigError.self) { try second.finish() }
        #expect(error?.line == 9)
        #expect(error?.keyPath == "routes[1].audience")
        #expect(error?.description.hasPrefix("gw.yaml:9:") == true)
    }

    @Test("a missing required key and a wrong type are located")
    func wrongTypes() throws {
        var root = try ConfigNode.parse(yaml: yaml, file: "gw.yaml").mapping()
        var limits = try root.required("limits").mapping()
        let missing = #expect(throws: ConfigError.self) { try limits.required("max_body_bytes") }
        #expect(missing?.keyPath == "limits.max_body_bytes")
        #expect(missing?.message == "missing required key")
        let notInt = #expect(throws: ConfigError.self) { try root.required("listen").int() }
        #expect(notInt?.line == 1)
        #expect(throws: ConfigError.self) { try ConfigNode.parse(yaml: "a: [1, 2", file: "bad.yaml") }
    }

    @Test("duplicate keys are rejected")
    func duplicates() {
        let error = #expect(throws: ConfigError.self) { try ConfigNode.parse(yaml: "a: 1\na: 2\n", file: "d.yaml") }
        #expect(error?.line != nil)
        #expect(error?.keyPath == "a")
        #expect(error?.message == "duplicate key")
    }

    @Test("durations and sizes parse their units", arguments: [("5s", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("1.5", 1.5)])
    func durations(_ text: String, _ seconds: Double) {
        #expect(ConfigNode.parseDuration(text) == seconds)
    }

    @Test("bad sizes are rejected")
    func badSizes() {
        #expect(ConfigNode.parseByteCount("12 parsecs") == nil)
        #expect(ConfigNode.parseByteCount("-1") == nil)
        #expect(ConfigNode.parseByteCount("1GiB") == 1 << 30)
    }
}

@Suite("secrets outside the YAML")
struct ConfigSecretTests {
    @Test("${NAME} anywhere in a string comes from the environment; $${ is a literal ${")
    func environment() throws {
        setenv("PORTCULLIS_TEST_PASSWORD", "s3cret", 1)
        defer { unsetenv("PORTCULLIS_TEST_PASSWORD") }
        var root = try ConfigNode.parse(yaml: """
        url: rediss://gw:${PORTCULLIS_TEST_PASSWORD}@redis:6380/0
        whole: ${PORTCULLIS_TEST_PASSWORD}
        literal: cost $5 and $${HOME}
        """, file: "gw.yaml").mapping()
        #expect(try root.required("url").string() == "rediss://gw:s3cret@redis:6380/0")
        #expect(try root.required("whole").string() == "s3cret")
        #expect(try root.required("literal").string() == "cost $5 and ${HOME}")
    }

    @Test("an unset variable is an error naming it, the file and the line, never a value")
    func unsetVariable() throws {
        unsetenv("PORTCULLIS_TEST_UNSET")
        var root = try ConfigNode.parse(yaml: "a: 1\nsecret: x${PORTCULLIS_TEST_UNSET}y\n", file: "gw.yaml").mapping()
        _ = root.optional("a")
        let node = try root.required("secret")
        #expect { try node.string() } throws: { error in
            "\(error)".contains("gw.yaml:2") && "\(error)".contains("PORTCULLIS_TEST_UNSET") && "\(error)".contains("secret")
        }
    }

    @Test("{file: path} reads the file, relative to the config's folder, without trailing line breaks")
    func file() throws {
        let directory = NSTemporaryDirectory() + "portcullis-config-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "line one\nkey-material\n\n".write(toFile: directory + "/secret.txt", atomically: true, encoding: .utf8)
        var root = try ConfigNode.parse(yaml: "secret: {file: secret.txt}\nmissing: {file: nope.txt}\n", file: directory + "/gw.yaml").mapping()
        #expect(try root.required("secret").string() == "line one\nkey-material")
        let missing = try root.required("missing")
        #expect { try missing.string() } throws: { "\($0)".contains("nope.txt") && "\($0)".contains(":2") }
    }
}

@Suite("config files that cannot be read")
struct ConfigFileTests {
    /// A folder with a directory, a FIFO, a symlink loop, an unreadable file and a file that is
    /// not UTF-8, each under a `.yaml` name.
    static func folder() throws -> String {
        let directory = NSTemporaryDirectory() + "portcullis-config-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory + "/dir.yaml", withIntermediateDirectories: true)
        #expect(mkfifo(directory + "/fifo.yaml", 0o600) == 0)
        try FileManager.default.createSymbolicLink(atPath: directory + "/loop-a.yaml", withDestinationPath: directory + "/loop-b.yaml")
        try FileManager.default.createSymbolicLink(atPath: directory + "/loop-b.yaml", withDestinationPath: directory + "/loop-a.yaml")
        try Data([0x6b, 0x3a, 0x20, 0xff, 0xfe, 0x0a]).write(to: URL(fileURLWithPath: directory + "/latin.yaml"))
        return directory
    }

    @Test("a directory, a FIFO, a device, a symlink loop, a missing file and bytes that are not UTF-8 are each refused at once, in words that say which, naming the file",
          arguments: [("dir.yaml", "is a directory"), ("fifo.yaml", "is a FIFO"), ("loop-a.yaml", "symbolic links"), ("missing.yaml", "no such file"),
                      ("latin.yaml", "not UTF-8"), ("/dev/zero", "is a device")])
    func refused(name: String, words: String) throws {
        let directory = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = name.hasPrefix("/") ? name : directory + "/" + name
        let started = ContinuousClock.now
        // The FIFO has no writer: a reader that blocked on it would never return.
        #expect { try ConfigNode.load(file: path) } throws: { error in
            let text = "\(error)"
            return text.hasPrefix(path + ": cannot read file: ") && text.contains(words) && !text.contains("NSCocoaErrorDomain") && !text.contains("\n")
        }
        #expect(ContinuousClock.now - started < .seconds(2))
        // The same words for a secret named with {file: …}.
        var root = try ConfigNode.parse(yaml: "secret: {file: \(path)}\n", file: directory + "/gw.yaml").mapping()
        let secret = try root.required("secret")
        #expect { try secret.string() } throws: { "\($0)".contains(words) && "\($0)".contains("gw.yaml:1") }
    }

    @Test("a YAML syntax error is one line naming the line and column, and does not quote the file (a line may hold a secret)")
    func syntaxErrorOneLine() throws {
        let yaml = "listen: 127.0.0.1:8080\nadmin_token: s3cret-value\nroutes: [\n  - path: /api\n"
        #expect { try ConfigNode.parse(yaml: yaml, file: "gw.yaml") } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("gw.yaml:") && text.contains("invalid YAML: ") && !text.contains("\n") && !text.contains("s3cret")
                && (error as? ConfigError)?.line != nil && (error as? ConfigError)?.column != nil
        }
    }
}
