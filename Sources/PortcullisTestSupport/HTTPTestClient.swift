import Foundation

/// A response as read off the wire.
public struct HTTPTestResponse: Sendable {
    public var status: Int
    /// Header names lower-cased, in order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name == lower }?.value
    }

    public func headerValues(_ name: String) -> [String] {
        let lower = name.lowercased()
        return headers.filter { $0.name == lower }.map(\.value)
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as a JSON object (the test upstream's echo, the gateway's errors).
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    /// For echoes from `TestUpstream`: the request headers the upstream received.
    public var echoedHeaders: [String: [String]] {
        json["headers"] as? [String: [String]] ?? [:]
    }
}

/// Errors from the test client.
public enum HTTPTestClientError: Error, CustomStringConvertible {
    case connect(String)
    case io(String)
    case closed
    case malformed(String)

    public var description: String {
        switch self {
        case .connect(let why): "connect: \(why)"
        case .io(let why): "I/O: \(why)"
        case .closed: "connection closed by peer"
        case .malformed(let why): "malformed response: \(why)"
        }
    }
}

/// A deliberately low-level HTTP/1.1 client over a blocking socket: tests need to send exactly
/// the bytes they mean (pipelining, smuggling shapes, slow headers, huge bodies) and see exactly
/// what came back, which a full client library would normalise away.
public final class HTTPTestClient {
    private let fd: Int32
    private var buffer: [UInt8] = []
    public private(set) var isClosed = false

    /// Connects to `host:port`; from the local address `source` when given (any 127.x.y.z
    /// works on Linux loopback, so a test can play several clients).
    public init(host: String = "127.0.0.1", port: Int, timeout: Double = 10, source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPTestClientError.connect("socket() failed") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let source {
            try Self.call(fd, bind, host: source, port: 0, failure: "bind \(source)")
        }
        try Self.call(fd, connect, host: host, port: port, failure: "\(host):\(port)")
    }

    /// `operation` (bind or connect) on `fd` with the IPv4 address `host:port`; on failure the
    /// socket is closed and the error names `failure`.
    private static func call(_ fd: Int32, _ operation: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32,
                             host: String, port: Int, failure: String) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { operation(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let message = String(cString: strerror(errno))
            Foundation.close(fd)
            throw HTTPTestClientError.connect("\(failure): \(message)")
        }
    }

    deinit {
        if !isClosed { Foundation.close(fd) }
    }

    /// Whether the server has closed (or reset) the connection, looked at without waiting or
    /// taking anything it sent.
    public var closedByPeer: Bool {
        var byte: UInt8 = 0
        let read = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return read == 0 || (read < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        Foundation.close(fd)
    }

    /// Writes raw bytes.
    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw HTTPTestClientError.io("send: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    public func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Sends a request with the given headers (Host and Content-Length are added when missing).
    public func request(_ method: String = "GET", _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> HTTPTestResponse {
        try send(Self.format(method, path, headers: headers, body: body))
        return try readResponse(method: method)
    }

    public static func format(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) -> [UInt8] {
        var text = "\(method) \(path) HTTP/1.1\r\n"
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { text += "Host: test.local\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body, !headers.contains(where: { $0.0.lowercased() == "content-length" || $0.0.lowercased() == "transfer-encoding" }) {
            text += "Content-Length: \(body.count)\r\n"
        }
        text += "\r\n"
        return Array(text.utf8) + (body ?? [])
    }

    /// Reads one response. `method` matters only for HEAD (no body). Interim (1xx) responses are
    /// skipped, unless `informational`: then one is returned as it comes (head only), so a test
    /// can wait for `100 Continue` before sending a body.
    public func readResponse(method: String = "GET", informational: Bool = false) throws -> HTTPTestResponse {
        while true {
            let headEnd = try readUntilHeaderEnd()
            let headText = String(decoding: buffer[..<headEnd], as: UTF8.self)
            buffer.removeFirst(headEnd + 4)
            var lines = headText.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst()
            let statusParts = statusLine.split(separator: " ", maxSplits: 2)
            guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
                throw HTTPTestClientError.malformed("status line '\(statusLine)'")
            }
            var headers: [(String, String)] = []
            for line in lines where !line.isEmpty {
                guard let colon = line.firstIndex(of: ":") else { throw HTTPTestClientError.malformed("header '\(line)'") }
                headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            var response = HTTPTestResponse(status: status, headers: headers, body: [])
            if (100..<200).contains(status) {
                if informational { return response }
                continue  // the real response follows
            }
            if method == "HEAD" || status == 204 || status == 304 { return response }
            if let length = response.header("content-length").flatMap(Int.init) {
                response.body = try readExactly(length)
            } else if response.header("transfer-encoding")?.lowercased().contains("chunked") == true {
                response.body = try readChunked()
            } else {
                response.body = try readToEnd()
            }
            return response
        }
    }

    /// Reads until the peer closes (or `timeout`): how many bytes came, buffered ones included,
    /// and whether it closed.
    public func drain() -> (bytes: Int, closed: Bool) {
        var total = 0
        let closed = readToClose { total += $0.count }
        return (total, closed)
    }

    /// Reads until the peer closes (or `timeout`): the bytes that came, buffered ones included,
    /// and whether it closed.
    public func readUntilClose() -> (bytes: [UInt8], closed: Bool) {
        var bytes: [UInt8] = []
        let closed = readToClose { bytes += $0 }
        return (bytes, closed)
    }

    /// Hands `received` the buffered bytes, then each read until the peer closes or resets the
    /// connection (true) or a read fails otherwise or times out (false).
    private func readToClose(_ received: (ArraySlice<UInt8>) -> Void) -> Bool {
        received(buffer[...])
        buffer = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
            received(chunk[..<n])
        }
    }

    /// Reads until the peer closed (or `timeout`); true if it closed.
    public func waitForClose() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { throw HTTPTestClientError.closed }
        if n < 0 { throw HTTPTestClientError.io("recv: \(String(cString: strerror(errno)))") }
        buffer += chunk[..<n]
    }

    private func readUntilHeaderEnd() throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= 4 {
                var index = max(0, searchFrom - 3)
                while index + 3 < buffer.count {
                    if buffer[index] == 13, buffer[index + 1] == 10, buffer[index + 2] == 13, buffer[index + 3] == 10 { return index }
                    index += 1
                }
                searchFrom = buffer.count
            }
            try fill()
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        let out = Array(buffer[..<count])
        buffer.removeFirst(count)
        return out
    }

    private func readLine() throws -> String {
        while true {
            if let index = buffer.firstIndex(of: 10), index > 0, buffer[index - 1] == 13 {
                let line = String(decoding: buffer[..<(index - 1)], as: UTF8.self)
                buffer.removeFirst(index + 1)
                return line
            }
            try fill()
        }
    }

    private func readChunked() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try readLine()
            guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else { throw HTTPTestClientError.malformed("chunk size '\(sizeLine)'") }
            if size == 0 {
                while try !readLine().isEmpty {}
                return body
            }
            body += try readExactly(size)
            _ = try readLine()
        }
    }

    private func readToEnd() throws -> [UInt8] {
        while true {
            do { try fill() } catch HTTPTestClientError.closed { break }
        }
        let out = buffer
        buffer = []
        return out
    }
}
