import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import PortcullisJOSE
import Synchronization

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

    /// Where the client's TLS material is; nil fields: the system's trust store, no certificate.
    struct TLSFiles: Hashable, Sendable {
        var caFile: String?
        var certificate: String?
        var privateKey: String?

        /// The client's TLS settings; throws `Failure` naming the file that does not load.
        func configuration() throws -> TLSConfiguration {
            var settings = TLSConfiguration.makeClientConfiguration()
            if let caFile {
                do {
                    settings.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                } catch {
                    throw Failure(description: "--ca-file \(caFile): not a PEM certificate (\(error))")
                }
            }
            if let certificate, let privateKey {
                do {
                    settings.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                } catch {
                    throw Failure(description: "--cert \(certificate): not a PEM certificate (\(error))")
                }
                do {
                    settings.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKey, format: .pem))
                } catch {
                    throw Failure(description: "--key \(privateKey): not a PEM private key (\(error))")
                }
            }
            return settings
        }
    }

    let baseURL: String
    let token: String?
    let tls: TLSFiles

    func get(_ path: String) async throws -> Reply { try await call(.GET, path, body: nil) }
    func post(_ path: String, _ body: JSONValue? = nil) async throws -> Reply { try await call(.POST, path, body: body) }
    func delete(_ path: String) async throws -> Reply { try await call(.DELETE, path, body: nil) }

    /// The CLI's HTTP client for `tls`. AsyncHTTPClient's default retries a refused connection
    /// until the request's deadline (330 s here, for revocations that wait for their
    /// propagation); an admin API that cannot be reached is reported at once instead. Kept for the
    /// process's life, never shut down, like `HTTPClient.shared` (a command makes one or two).
    private static let clients = Mutex<[TLSFiles: HTTPClient]>([:])

    private static func client(_ tls: TLSFiles) throws -> HTTPClient {
        try clients.withLock { clients in
            if let client = clients[tls] { return client }
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.timeout.connect = .seconds(10)
            configuration.tlsConfiguration = try tls.configuration()
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[tls] = client
            return client
        }
    }

    private func call(_ method: HTTPMethod, _ path: String, body: JSONValue?) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        request.headers.add(name: "accept", value: "application/json")
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: JSONWriter.serialize(body)))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await Self.client(tls).execute(request, timeout: .seconds(330))
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
