import ArgumentParser
import PortcullisConfig

@main
struct Portcullis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portcullis",
        abstract: "A distributed API gateway cluster: JWT validation, cluster-wide revocation and rate limits over Redis.",
        version: PortcullisVersion.current,
        subcommands: [GatewayCommand.self, ControlCommand.self, TokenCommand.self, AdminCommand.self]
    )
}
