import ArgumentParser
import Foundation
import PortcullisConfig

@main
struct Portcullis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portcullis",
        abstract: "A distributed API gateway cluster: JWT validation, cluster-wide revocation and rate limits over Redis.",
        version: PortcullisVersion.current,
        subcommands: [GatewayCommand.self, ControlCommand.self, TokenCommand.self, AdminCommand.self, HashPasswordCommand.self]
    )

    /// ArgumentParser's own entry point, except that its usage errors (an unknown subcommand or
    /// option, a missing argument: its `EX_USAGE`, 64) exit with 2, the status every subcommand
    /// uses for usage and configuration errors. The whole table — 0 done, 1 the answer is no or
    /// the work failed, 2 usage or configuration, 3 a revocation not yet acknowledged everywhere
    /// (`admin revoke --wait`) — is in docs/operations.md, "Exit status" (`CLITests`).
    static func main() async {
        do {
            var command = try await asyncParseAsRoot(nil)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }
}
