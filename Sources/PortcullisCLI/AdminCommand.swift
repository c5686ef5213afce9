import ArgumentParser
import PortcullisConfig

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Drive the control plane's admin API.",
        version: PortcullisVersion.current,
        subcommands: []
    )
}
