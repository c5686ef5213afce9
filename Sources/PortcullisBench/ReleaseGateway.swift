import Foundation
import PortcullisTestSupport

/// The gateway executable that the multi-process benchmarks (`cluster`, `revocations`, `scale`)
/// start: `$PORTCULLIS_BIN` when set, else the release build next to the package. `swift run
/// PortcullisBench` builds only its own product, so on a fresh clone that build is missing; the
/// benchmark then stops before starting anything and says how to build it.
enum ReleaseGateway {
    /// Points `PORTCULLIS_BIN` (read by `GatewayProcess`) at the gateway to start, or throws
    /// `MissingGatewayBinary` when there is no executable there.
    static func select() throws {
        let environment = ProcessInfo.processInfo.environment
        let path = environment["PORTCULLIS_BIN"].flatMap { $0.isEmpty ? nil : $0 }
            ?? PortcullisBinary.packageRoot + "/.build/release/portcullis"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw MissingGatewayBinary(path: path, fromEnvironment: environment["PORTCULLIS_BIN"] != nil)
        }
        setenv("PORTCULLIS_BIN", path, 1)
    }
}

/// The gateway executable a benchmark would start does not exist.
struct MissingGatewayBinary: Error, CustomStringConvertible {
    let path: String
    let fromEnvironment: Bool

    var description: String {
        if fromEnvironment {
            return "PORTCULLIS_BIN names \(path), which is not an executable file"
        }
        return "this benchmark starts gateway processes from \(path), which does not exist: "
            + "`swift run PortcullisBench` builds only the bench. Build the gateway first with "
            + "`swift build -c release --product portcullis` (the flags `swift run -c release` uses, so the "
            + "bench is not rebuilt), or set PORTCULLIS_BIN to a gateway binary "
            + "(e.g. one built by `cluster/build-release.sh --product portcullis`)."
    }
}
