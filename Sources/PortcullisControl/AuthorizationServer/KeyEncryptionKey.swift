import Crypto
import Foundation
import Logging
import PortcullisConfig
import PortcullisJOSE

/// The AES-256-GCM key that seals the authorization server's private signing keys in Redis, so
/// that read access to Redis does not give away a key that can mint tokens.
struct KeyEncryptionKey: Sendable {
    enum LoadError: Error, CustomStringConvertible {
        case unreadable(String)
        case malformed(String)
        case cannotCreate(String)

        var description: String {
            switch self {
            case .unreadable(let why), .malformed(let why), .cannotCreate(let why): why
            }
        }
    }

    private let key: SymmetricKey

    init(bytes: [UInt8]) {
        key = SymmetricKey(data: bytes)
    }

    /// Reads the key from `path` (32 bytes, base64url); when the file does not exist, generates
    /// one, writes it with mode 0600 and says so in the log (every control plane sharing the
    /// Redis needs a copy of the same file).
    static func loadOrCreate(path: String, logger: Logger) throws(LoadError) -> KeyEncryptionKey {
        // `lstat`: a symlink whose target is missing exists too, and is an error to report, not a
        // file to create (creating through it fails, and reading it again would go round for good).
        if exists(path) { return try load(path: path) }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // Written whole to a file of its own and synced, then linked into place: `link` fails
        // rather than replace a key another control plane created meanwhile (then theirs is
        // used), and no reader or crash ever sees the file empty or half written — a lost key
        // leaves every signing key sealed with it unopenable.
        let temporary = path + ".tmp-" + Hex.encode((0..<6).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try writeSynced(Base64URL.encode(bytes) + "\n", to: temporary, for: path)
        defer { unlink(temporary) }
        if link(temporary, path) != 0 {
            if errno == EEXIST { return try load(path: path) }
            throw .cannotCreate("cannot create the key-encryption key \(path): \(String(cString: strerror(errno)))")
        }
        let folder = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
        logger.warning("generated a new key-encryption key for the authorization server's signing keys; every control plane sharing this Redis needs a copy of this file",
                       metadata: ["file": "\(path)"])
        return KeyEncryptionKey(bytes: bytes)
    }

    /// What `--check` can say without creating anything: the key at `path` loads, or, where
    /// there is none, its folder lets one be created.
    static func check(path: String) throws(LoadError) {
        if exists(path) {
            _ = try load(path: path)
            return
        }
        let folder = (path as NSString).deletingLastPathComponent
        guard access(folder.isEmpty ? "." : folder, W_OK | X_OK) == 0 else {
            throw .cannotCreate("cannot create the key-encryption key \(path): \(String(cString: strerror(errno))) (its folder)")
        }
    }

    /// Whether anything (a symlink included) is at `path`; only "no such file" counts as absent,
    /// so a folder that cannot be searched is reported when the key is read, not as "cannot create".
    private static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 || errno != ENOENT
    }

    private static func writeSynced(_ text: String, to temporary: String, for path: String) throws(LoadError) {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .cannotCreate("cannot create the key-encryption key \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                unlink(temporary)
                throw .cannotCreate("cannot write the key-encryption key \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard fsync(fd) == 0 else {
            unlink(temporary)
            throw .cannotCreate("cannot write the key-encryption key \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func load(path: String) throws(LoadError) -> KeyEncryptionKey {
        let text: String
        do {
            text = try ConfigFile.text(atPath: path)
        } catch {
            throw .unreadable("cannot read the key-encryption key \(path): \(error.reason)")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "=", with: "")
        guard let bytes = Base64URL.decode(trimmed), bytes.count == 32 else {
            throw .malformed("\(path): the key-encryption key must be 32 bytes, base64url")
        }
        return KeyEncryptionKey(bytes: bytes)
    }

    /// nonce ‖ ciphertext ‖ tag, base64url; `context` is authenticated (binds the key to its kid).
    func seal(_ plaintext: [UInt8], context: String) throws -> String {
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: Array(context.utf8))
        guard let combined = box.combined else { throw LoadError.malformed("AES-GCM produced no combined form") }
        return Base64URL.encode(combined)
    }

    /// nil when the text was not sealed under this key for this context.
    func unseal(_ sealed: String, context: String) -> [UInt8]? {
        guard let bytes = Base64URL.decode(sealed), let box = try? AES.GCM.SealedBox(combined: bytes),
              let plaintext = try? AES.GCM.open(box, using: key, authenticating: Array(context.utf8)) else { return nil }
        return Array(plaintext)
    }
}
