import ArgumentParser
import PortcullisConfig

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run one stateless gateway node.",
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the gateway's YAML configuration.")
    var config: String

    func run() async throws {
        throw CleanExit.message("the gateway data plane is not built yet")
    }
}
