import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PortcullisJOSE

/// A JSON call to the admin API.
struct AdminClient {
    struct Reply {
        var status: Int
        var body: String
        var json: JSONValue
    }

    /// The API answered with an error (`error`, `error_description`) or could not be reached.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let baseURL: String
    let token: String

    func get(_ path: String) async throws -> Reply { try await call(.GET, path, body: nil) }
    func post(_ path: String, _ body: JSONValue? = nil) async throws -> Reply { try await call(.POST, path, body: body) }
    func delete(_ path: String) async throws -> Reply { try await call(.DELETE, path, body: nil) }

    /// The CLI's HTTP client. AsyncHTTPClient's default retries a refused connection until the
    /// request's deadline (330 s here, for revocations that wait for their propagation); an admin
    /// API that cannot be reached is reported at once instead. Never shut down: it lives as long
    /// as the process, like `HTTPClient.shared`.
    private static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    private func call(_ method: HTTPMethod, _ path: String, body: JSONValue?) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "accept", value: "application/json")
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: JSONWriter.serialize(body)))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await Self.client.execute(request, timeout: .seconds(330))
            bytes = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw Failure(description: "cannot reach the admin API at \(baseURL): \(error)")
        }
        let text = String(buffer: bytes)
        let json = (try? JOSEJSONReader.parse(Array(text.utf8))) ?? .null
        guard (200..<300).contains(Int(response.status.code)) else {
            let code = json["error"]?.stringValue ?? "HTTP \(response.status.code)"
            let detail = json["error_description"]?.stringValue ?? text
            throw Failure(description: "\(code): \(detail)")
        }
        return Reply(status: Int(response.status.code), body: text, json: json)
    }

    /// Percent-encodes a path segment or query value.
    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}

/// Runs an API call, turning failures into a message on stderr and exit status 1.
func adminCall<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let failure as AdminClient.Failure {
        printError("portcullis admin: \(failure)")
        throw ExitCode(1)
    }
}
