import ArgumentParser
import Foundation
import PortcullisConfig
import PortcullisControl

/// `portcullis hash-password`: the `password_hash` of a users file entry.
struct HashPasswordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-password",
        abstract: "Hash a password for the authorization server's users file (scrypt, N=2^17, r=8, p=1).",
        discussion: "Reads the password from the first line of standard input (so it stays out of the shell history and the process list) and prints its password_hash.",
        version: PortcullisVersion.current
    )

    func run() async throws {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("no password on standard input (e.g. read -rs PW; printf '%s\\n' \"$PW\" | portcullis hash-password)")
        }
        print(try PasswordHash.make(password: line))
    }
}
