#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking TCP socket with short timeouts, for readiness probes only. Hand-written because the
/// probes run before any server is known to be up and must not need an event loop; every call is
/// bounded by `timeoutMilliseconds`, so a probe never hangs the caller.
struct PlainSocket: ~Copyable {
    private let fd: Int32
    private let timeoutMilliseconds: Int32

    init(host: String, port: Int, timeoutMilliseconds: Int32) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw FixtureError("\(host):\(port): cannot resolve host (\(String(cString: gai_strerror(status))))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket(): \(errnoDescription())") }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
            let code = errno
            guard code == EINPROGRESS else {
                close(fd)
                throw FixtureError("\(host):\(port): \(errnoDescription(code))")
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&pfd, 1, timeoutMilliseconds)
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            guard ready == 1, soError == 0 else {
                close(fd)
                throw FixtureError("\(host):\(port): \(ready == 1 ? errnoDescription(soError) : "connect timed out")")
            }
        }
        self.fd = fd
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    deinit { close(fd) }

    func sendAll(_ text: String) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&pfd, 1, timeoutMilliseconds) == 1 else { throw FixtureError("send timed out") }
            let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else {
                if errno == EAGAIN || errno == EINTR { continue }
                throw FixtureError("send: \(errnoDescription())")
            }
            bytes = bytes.dropFirst(written)
        }
    }

    /// Reads until `complete` accepts what arrived, the peer closes, or the timeout passes.
    func receive(until complete: ([UInt8]) -> Bool) throws -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !complete(received) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, timeoutMilliseconds) == 1 else { throw FixtureError("no reply within \(timeoutMilliseconds) ms") }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw FixtureError("recv: \(errnoDescription())")
            }
            received += chunk[0..<count]
        }
        return received
    }
}
