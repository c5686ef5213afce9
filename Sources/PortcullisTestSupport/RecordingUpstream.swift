import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// An upstream on a free loopback port that records exactly the requests it receives — method,
/// target, body bytes — reading the raw bytes itself rather than through an HTTP decoder, so a
/// test sees where the gateway ended each request. Every complete request is answered with
/// `200 ok` (`Content-Length: 2`). The gateway writes requests framed by `Content-Length` or
/// chunked coding; anything else is recorded as `malformed` and the connection is closed.
public final class RecordingUpstream: Sendable {
    public struct Request: Sendable, Equatable, CustomStringConvertible {
        public var method: String
        public var target: String
        public var body: [UInt8]

        public init(method: String, target: String, body: [UInt8]) {
            self.method = method
            self.target = target
            self.body = body
        }

        public var description: String {
            "\(method) \(target) body[\(body.count)]=\(String(decoding: body, as: UTF8.self).debugDescription)"
        }
    }

    public let port: Int
    public var address: String { "127.0.0.1:\(port)" }
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let log: Log

    final class Log: Sendable {
        /// `partial`: the connections (by number) in the middle of a request.
        let state = Mutex<(requests: [Request], partial: Set<Int>, malformed: [String])>(([], [], []))
        let connections = Atomic<Int>(0)
    }

    public static func start() async throws -> RecordingUpstream {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let log = Log()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RecordingHandler(log: log))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RecordingUpstream(port: channel.localAddress!.port!, group: group, channel: channel, log: log)
    }

    private init(port: Int, group: MultiThreadedEventLoopGroup, channel: any Channel, log: Log) {
        self.port = port
        self.group = group
        self.channel = channel
        self.log = log
    }

    /// The complete requests received so far, in order.
    public var requests: [Request] { log.state.withLock { $0.requests } }
    /// Connections on which a request has started but not ended.
    public var partialRequests: Int { log.state.withLock { $0.partial.count } }
    /// What could not be read as a request the gateway writes.
    public var malformed: [String] { log.state.withLock { $0.malformed } }

    public func reset() {
        log.state.withLock { $0 = ([], [], []) }
    }

    public func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let log: RecordingUpstream.Log
    private let connection: Int
    private var received: [UInt8] = []

    init(log: RecordingUpstream.Log) {
        self.log = log
        connection = log.connections.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += Array(buffer: unwrapInboundIn(data))
        while !received.isEmpty {
            let result: Parse
            do {
                result = try Self.parse(received)
            } catch {
                log.state.withLock { $0.malformed.append("\(error): \(String(decoding: received, as: UTF8.self).debugDescription)") }
                context.close(promise: nil)
                return
            }
            guard case .request(let request, let used) = result else {
                _ = log.state.withLock { $0.partial.insert(connection) }
                return
            }
            received.removeFirst(used)
            log.state.withLock {
                $0.partial.remove(connection)
                $0.requests.append(request)
            }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        _ = log.state.withLock { $0.partial.remove(connection) }
    }

    private enum Parse {
        case needMore
        case request(RecordingUpstream.Request, used: Int)
    }

    private struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        var index = start
        while index + needle.count <= bytes.count {
            if bytes[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    private static func parse(_ bytes: [UInt8]) throws -> Parse {
        let crlf: [UInt8] = [13, 10]
        guard let headEnd = find(crlf + crlf, in: bytes, from: 0) else { return .needMore }
        let lines = String(decoding: bytes[..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2] == "HTTP/1.1" else { throw Malformed(description: "request line \(lines[0].debugDescription)") }
        var length: Int?
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw Malformed(description: "field \(line.debugDescription)") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: [" ", "\t"])
            if name == "content-length" {
                guard length == nil, let number = Int(value), number >= 0 else { throw Malformed(description: "Content-Length \(value)") }
                length = number
            }
            if name == "transfer-encoding" {
                guard !chunked, value == "chunked" else { throw Malformed(description: "Transfer-Encoding \(value)") }
                chunked = true
            }
        }
        guard !(chunked && length != nil) else { throw Malformed(description: "both Content-Length and Transfer-Encoding") }
        var position = headEnd + 4
        var body: [UInt8] = []
        if chunked {
            while true {
                guard let lineEnd = find(crlf, in: bytes, from: position) else { return .needMore }
                guard let size = Int(String(decoding: bytes[position..<lineEnd], as: UTF8.self), radix: 16), size >= 0 else {
                    throw Malformed(description: "chunk size")
                }
                position = lineEnd + 2
                if size == 0 {
                    guard bytes.count >= position + 2 else { return .needMore }
                    guard bytes[position] == 13, bytes[position + 1] == 10 else { throw Malformed(description: "trailers") }
                    position += 2
                    break
                }
                guard bytes.count >= position + size + 2 else { return .needMore }
                body += bytes[position..<(position + size)]
                position += size
                guard bytes[position] == 13, bytes[position + 1] == 10 else { throw Malformed(description: "chunk end") }
                position += 2
            }
        } else if let length, length > 0 {
            guard bytes.count >= position + length else { return .needMore }
            body = Array(bytes[position..<(position + length)])
            position += length
        }
        let request = RecordingUpstream.Request(method: String(requestLine[0]), target: String(requestLine[1]), body: body)
        return .request(request, used: position)
    }
}
