import ArgumentParser
import Foundation
import PortcullisConfig
import PortcullisJOSE

/// `portcullis token inspect TOKEN`: decodes without verifying, and says so.
struct TokenInspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Decode a token's header and claims WITHOUT verifying anything.",
        version: PortcullisVersion.current
    )

    @Argument(help: "The token (default: the first line of standard input).")
    var token: String?

    func run() async throws {
        guard let text = token ?? readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
            FileHandle.standardError.write(Data("portcullis token inspect: no token given\n".utf8))
            throw ExitCode(2)
        }
        let decoded: UnverifiedJWT
        do {
            decoded = try UnverifiedJWT(parsing: text[...])
        } catch {
            FileHandle.standardError.write(Data("portcullis token inspect: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        print("UNVERIFIED — signature, issuer, audience and times NOT checked; use `portcullis token verify`.")
        print("header: " + JSONWriter.serialize(decoded.header))
        print("claims: " + (decoded.claims.map(JSONWriter.serialize) ?? "(payload is not JSON)"))
        print("signature: \(decoded.signatureByteCount) bytes")
        let now = Int64(Date().timeIntervalSince1970)
        for name in ["iat", "nbf", "exp"] {
            guard let seconds = decoded.claims?[name]?.int64Value else { continue }
            let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            let relative = seconds >= now ? "in \(seconds - now) s" : "\(now - seconds) s ago"
            print("\(name): \(date) (\(relative))")
        }
    }
}
