import ArgumentParser
import PortcullisConfig

struct ControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Run the control-plane node: admin API, cluster metrics, optional authorization server.",
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "Path to the control plane's YAML configuration.")
    var config: String

    func run() async throws {
        throw CleanExit.message("the control plane is not built yet")
    }
}
