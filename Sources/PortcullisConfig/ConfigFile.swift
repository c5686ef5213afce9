#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a configuration file, or a secret it names with `{file: …}`, as UTF-8 text.
///
/// Written against POSIX rather than `String(contentsOfFile:)` so that each way a path can fail
/// gets words an operator can act on — Foundation answers a symlink loop or a directory with
/// "NSCocoaErrorDomain error 256" and a FIFO or a device with "permission" — and so that a FIFO
/// or `/dev/zero` named by mistake is refused at once instead of blocking or reading forever: the
/// file is opened without blocking and must be a regular file.
public enum ConfigFile {
    /// Larger than any configuration or secret; a bound on what a path named by mistake can cost.
    public static let maximumSize = 64 << 20

    /// Why a file could not be read, in words (no path: the caller's error names it).
    public struct ReadError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What went wrong, e.g. `no such file` or `is a directory, not a file`.
        public var reason: String
        /// The reason, as it is.
        public var description: String { reason }
    }

    /// The file's contents as text.
    public static func text(atPath path: String) throws(ReadError) -> String {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(reason: reason(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ReadError(reason: reason(errno)) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw ReadError(reason: "is a directory, not a file")
        case S_IFIFO: throw ReadError(reason: "is a FIFO (named pipe), not a regular file")
        case S_IFCHR, S_IFBLK: throw ReadError(reason: "is a device, not a regular file")
        case S_IFSOCK: throw ReadError(reason: "is a socket, not a regular file")
        default: throw ReadError(reason: "is not a regular file")
        }
        guard Int(info.st_size) <= maximumSize else {
            throw ReadError(reason: "is \(info.st_size) bytes, more than the \(maximumSize >> 20) MiB a configuration file may have")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(Int(info.st_size))
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: reason(errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            guard bytes.count <= maximumSize else {
                throw ReadError(reason: "grew past the \(maximumSize >> 20) MiB a configuration file may have while being read")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ReadError(reason: "is not UTF-8 text") }
        return text
    }

    private static func reason(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file"
        case EACCES, EPERM: return "permission denied"
        case ELOOP: return "too many levels of symbolic links (a symlink loop?)"
        case ENOTDIR: return "a component of the path is not a directory"
        case ENAMETOOLONG: return "the path is too long"
        case EISDIR: return "is a directory, not a file"
        default: return String(cString: strerror(code))
        }
    }
}
