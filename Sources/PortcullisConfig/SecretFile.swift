#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file the configuration names that holds a secret — the cluster secret, the key-encryption
/// key, a TLS private key — and whether other users of the host can open it.
///
/// A warning, not a refusal: Kubernetes mounts Secrets with mode 0644 unless `defaultMode` says
/// otherwise, and a container has no other users to read them; on a shared host the warning says
/// what to change (docs/security.md, the secret-files row).
public struct SecretFile: Sendable, Equatable {
    /// The configuration key that names it (`cluster.secret_file`).
    public var key: String
    /// The file, resolved against the configuration file's folder.
    public var path: String

    /// A secret file named by `key`.
    public init(key: String, path: String) {
        self.key = key
        self.path = path
    }

    /// What to tell the operator when users other than the file's owner and group may read or
    /// write it (any of the mode's last three bits); nil when they may not, or when the file cannot
    /// be examined (loading it reports that).
    public var warning: String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let mode = UInt32(info.st_mode) & 0o777
        guard mode & 0o007 != 0 else { return nil }
        let access = mode & 0o004 != 0 ? "read" : mode & 0o002 != 0 ? "write" : "open"
        return "\(key) \(path) has mode 0\(String(mode, radix: 8)): every user of this host can \(access) it; "
            + "chmod 0600 (or 0640 for the service's group)"
    }
}
