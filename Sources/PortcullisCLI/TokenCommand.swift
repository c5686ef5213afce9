import ArgumentParser
import PortcullisConfig

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Verify or inspect JWTs offline.",
        version: PortcullisVersion.current,
        subcommands: [TokenVerifyCommand.self, TokenInspectCommand.self]
    )
}
