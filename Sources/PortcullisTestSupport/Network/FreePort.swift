#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Errors from the test fixtures, with enough context to act on them.
public struct FixtureError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Free TCP ports on loopback for servers started by tests.
///
/// Ports come from 20000–32767, below Linux's ephemeral range (32768–60999): a port the kernel
/// handed out for `bind(0)` is an ephemeral port, and by the time a slow fixture binds it
/// (a cluster script starting several processes) an outgoing connection — wrk, a Redis client —
/// may have taken it as its local port. Ports are never handed out twice by one test process.
public enum FreePort {
    private static let handedOut = Mutex<Set<Int>>([])

    /// A port that can be bound on 127.0.0.1 right now and was not handed out before.
    public static func allocate() throws -> Int {
        try run(count: 1)
    }

    /// The first of `count` consecutive such ports.
    public static func run(count: Int) throws -> Int {
        for _ in 0..<2000 {
            let base = Int.random(in: 20000...(32767 - count))
            let ports = base..<(base + count)
            let claimed = handedOut.withLock { used -> Bool in
                guard ports.allSatisfy({ !used.contains($0) }), ports.allSatisfy(isBindable) else { return false }
                used.formUnion(ports)
                return true
            }
            if claimed { return base }
        }
        throw FixtureError("no \(count) free consecutive loopback ports found in 20000-32767")
    }

    /// Whether a listener could bind 127.0.0.1:`port` (with SO_REUSEADDR, like our servers).
    static func isBindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopbackAddress(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}

func errnoDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
