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
