import Crypto
import CryptoExtras
import Foundation

/// A scrypt password hash (RFC 7914, BoringSSL's `EVP_PBE_scrypt` through swift-crypto) in a
/// self-describing text form that carries its own parameters, in the PHC string format:
/// `$scrypt$ln=17,r=8,p=1$<salt>$<key>`, salt and key in standard base64 without padding.
/// `ln` is log2 of the cost N. Hashes below OWASP's minimum for scrypt (N=2^17, r=8, p=1) are
/// refused, so a weak hash cannot be deployed by mistake; see docs/authorization-server.md.
public struct PasswordHash: Sendable, Equatable, CustomStringConvertible {
    /// log2 of the CPU/memory cost N.
    public var logN: Int
    /// Block size.
    public var r: Int
    /// Parallelism.
    public var p: Int
    public var salt: [UInt8]
    public var key: [UInt8]

    /// What `portcullis hash-password` writes: OWASP's minimum, N=2^17 (128 MiB with r=8), r=8, p=1.
    public static let defaultLogN = 17
    public static let defaultR = 8
    public static let defaultP = 1
    static let saltLength = 16
    static let keyLength = 32
    /// The most memory (128·N·r·p bytes) a hash may ask for: a users file cannot make one login
    /// take more than 1 GiB.
    static let maxMemory = 1 << 30

    /// Errors name what is wrong with the text, never the text (it is a secret).
    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Hashes `password` with a fresh random salt and the default parameters.
    public static func make(password: String) throws -> PasswordHash {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<saltLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return try make(password: password, salt: salt, logN: defaultLogN, r: defaultR, p: defaultP)
    }

    static func make(password: String, salt: [UInt8], logN: Int, r: Int, p: Int) throws -> PasswordHash {
        let key = try derive(password: password, salt: salt, logN: logN, r: r, p: p, length: keyLength)
        return PasswordHash(logN: logN, r: r, p: p, salt: salt, key: key)
    }

    /// Parses the encoded form; refuses malformed text and parameters below the minimum.
    public init(encoded text: String) throws(FormatError) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else {
            throw FormatError(description: "expected $scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key> (as `portcullis hash-password` prints)")
        }
        var parameters: [String: Int] = [:]
        for item in parts[2].split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]), value > 0, ["ln", "r", "p"].contains(String(pair[0])),
                  parameters[String(pair[0])] == nil else {
                throw FormatError(description: "the parameters must be ln=<log2 N>,r=<r>,p=<p> with positive integers")
            }
            parameters[String(pair[0])] = value
        }
        guard let logN = parameters["ln"], let r = parameters["r"], let p = parameters["p"] else {
            throw FormatError(description: "the parameters must name ln, r and p")
        }
        guard logN >= Self.defaultLogN, r >= Self.defaultR, p >= Self.defaultP else {
            throw FormatError(description: "scrypt parameters ln=\(logN),r=\(r),p=\(p) are below the minimum ln=17,r=8,p=1 (OWASP): hash the password again with `portcullis hash-password`")
        }
        guard logN < 32, r <= 64, p <= 16, (128 << logN) * r * p <= Self.maxMemory else {
            throw FormatError(description: "scrypt parameters ln=\(logN),r=\(r),p=\(p) need more than 1 GiB per login")
        }
        guard let salt = Self.base64(parts[3]), salt.count >= 16 else {
            throw FormatError(description: "the salt must be at least 16 bytes in base64 without padding")
        }
        guard let key = Self.base64(parts[4]), key.count >= 16, key.count <= 64 else {
            throw FormatError(description: "the key must be 16 to 64 bytes in base64 without padding")
        }
        self.init(logN: logN, r: r, p: p, salt: salt, key: key)
    }

    init(logN: Int, r: Int, p: Int, salt: [UInt8], key: [UInt8]) {
        self.logN = logN
        self.r = r
        self.p = p
        self.salt = salt
        self.key = key
    }

    /// The encoded form.
    public var description: String {
        "$scrypt$ln=\(logN),r=\(r),p=\(p)$\(Self.unpadded(salt))$\(Self.unpadded(key))"
    }

    /// Runs the KDF (hundreds of milliseconds and 128·N·r bytes: call it off the event loops) and
    /// compares the result with the stored key in constant time.
    func matches(_ password: String) -> Bool {
        guard let derived = try? Self.derive(password: password, salt: salt, logN: logN, r: r, p: p, length: key.count) else { return false }
        return Self.constantTimeEqual(derived, key)
    }

    static func derive(password: String, salt: [UInt8], logN: Int, r: Int, p: Int, length: Int) throws -> [UInt8] {
        let rounds = 1 << logN
        let key = try KDF.Scrypt.deriveKey(from: Array(password.utf8), salt: salt, outputByteCount: length, rounds: rounds, blockSize: r,
                                           parallelism: p, maxMemory: 128 * rounds * r * p + 65_536)
        return key.withUnsafeBytes { Array($0) }
    }

    /// Equal lengths are compared without an early exit, so the time says nothing about where
    /// the first difference lies.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    private static func unpadded(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    private static func base64(_ text: Substring) -> [UInt8]? {
        guard !text.contains("=") else { return nil }
        var padded = String(text)
        while padded.count % 4 != 0 { padded += "=" }
        return Data(base64Encoded: padded).map { Array($0) }
    }
}
