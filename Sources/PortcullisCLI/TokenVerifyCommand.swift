import ArgumentParser
import Foundation
import Logging
import PortcullisConfig
import PortcullisJOSE

/// `portcullis token verify --config FILE [TOKEN...]`: one JSON line per token, in input order.
/// Exit status: 0 all valid, 1 any invalid, 2 usage or configuration error.
struct TokenVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify tokens against the issuers of a configuration file.",
        discussion: """
        Reads tokens from the arguments, or from standard input one per line when none are given.
        Prints one JSON object per token: {"valid", "reason", "detail", "issuer", "kid", "sub", "exp"}.
        For refused tokens, issuer/kid/sub/exp are what the token claims (unverified).
        Only the `issuers:` key of the configuration is read. Remote key sets are fetched once.
        Exit status: 0 when every token is valid, 1 when any is not, 2 on a usage or configuration error.
        """,
        version: PortcullisVersion.current
    )

    @Option(name: .long, help: "YAML configuration with an `issuers:` list.")
    var config: String?

    // Collected loosely so that usage mistakes exit with status 2 like configuration errors.
    @Argument(parsing: .allUnrecognized, help: "Tokens to verify (default: standard input, one per line).")
    var tokens: [String] = []

    func run() async throws {
        if let unknown = tokens.first(where: { $0.hasPrefix("--") }) {
            throw usage("unknown option '\(unknown)'")
        }
        guard let config else { throw usage("--config FILE is required") }
        let issuers: [IssuerConfig]
        do {
            var root = try ConfigNode.load(file: config).mapping()
            let issuersNode = try root.required("issuers")
            let base = URL(fileURLWithPath: config).deletingLastPathComponent().path
            issuers = try IssuerConfig.list(from: issuersNode, baseDirectory: base)
        } catch let error as ConfigError {
            throw failure(error.description)
        }
        guard !issuers.isEmpty else { throw failure("\(config): issuers: list at least one issuer") }

        var logger = Logger(label: "portcullis.token") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let store = KeySetStore()
        let loader = KeySetLoader(issuers: issuers, store: store, logger: logger)
        do {
            try await loader.loadInitial()
        } catch {
            throw failure("\(config): \(error)")
        }
        let verifier = JWTVerifier(issuers: issuers, keys: store, cache: nil)

        let input = tokens.isEmpty ? Self.readStandardInput() : tokens
        var allValid = true
        for token in input {
            let line = Self.report(token: token, result: verifier.verify(token))
            if line.valid == false { allValid = false }
            print(JSONWriter.serialize(line.json))
        }
        if !allValid { throw ExitCode(1) }
    }

    static func readStandardInput() -> [String] {
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) {
            let token = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if !token.isEmpty { lines.append(token) }
        }
        return lines
    }

    static func report(token: String, result: Result<VerifiedToken, TokenRejection>) -> (valid: Bool, json: JSONValue) {
        switch result {
        case .success(let verified):
            return (true, [
                "valid": true, "reason": nil, "detail": nil,
                "issuer": .string(verified.issuer), "issuer_name": .string(verified.issuerName),
                "kid": verified.keyID.map(JSONValue.string) ?? nil, "sub": verified.subject.map(JSONValue.string) ?? nil,
                "exp": .integer(verified.expiresAt), "alg": .string(verified.algorithm.rawValue),
            ])
        case .failure(let rejection):
            let unverified = try? UnverifiedJWT(parsing: token[...])
            return (false, [
                "valid": false, "reason": .string(rejection.reason.rawValue), "detail": .string(rejection.detail),
                "issuer": unverified?.claims?["iss"] ?? nil, "kid": unverified?.header["kid"] ?? nil,
                "sub": unverified?.claims?["sub"] ?? nil, "exp": unverified?.claims?["exp"] ?? nil,
            ])
        }
    }

    private func usage(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("portcullis token verify: \(message)\n".utf8))
        return ExitCode(2)
    }

    private func failure(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        return ExitCode(2)
    }
}
