import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import Metrics
import NIOCore
import PortcullisConfig

/// Gets an issuer's JWK set — from its `jwks_file`, `jwks_uri` or OIDC discovery document — as
/// the document itself and as parsed keys, with the server's `Cache-Control: max-age`.
/// Shared by `KeySetLoader` (a node fetching for itself) and the control plane (which publishes
/// the document to the cluster verbatim, so every node parses the same bytes the MAC covers).
public struct JWKSDownloader: Sendable {
    /// Counts a node's fetch of `issuerName`'s set in `portcullis_jwks_fetch_total` (outcome `ok`,
    /// or a `Failure`'s), wherever it is made: the key-set loader, or a reload preparing.
    public static func countFetch(issuerName: String, outcome: String) {
        Counter(label: "portcullis_jwks_fetch_total", dimensions: [("issuer", issuerName), ("outcome", outcome)]).increment()
    }

    /// Why a download failed; `outcome` is the label of `portcullis_jwks_fetch_total`.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// `http_error`, `network_error` or `invalid`.
        public var outcome: String
        /// What went wrong, in words.
        public var message: String
        /// `outcome: message`.
        public var description: String { "\(outcome): \(message)" }

        /// A failure with this metric outcome and message.
        public init(outcome: String, message: String) {
            self.outcome = outcome
            self.message = message
        }
    }

    /// A downloaded key set.
    public struct Document: Sendable {
        /// The document's bytes, as read or received.
        public var body: [UInt8]
        /// `body` as text (it is valid UTF-8).
        public var text: String
        /// The usable keys parsed from `body`, plus the issuer's configured HMAC secrets.
        public var keySet: JWKSet
        /// `Cache-Control: max-age` (`no-cache`/`no-store` count as zero), when the server gave one.
        public var maxAge: Duration?
        /// The server's ETag, else a hash of the body: changes exactly when the set does.
        public var version: String
    }

    /// Larger documents are refused.
    public static let maxDocumentBytes = 1 << 20
    let httpClient: HTTPClient
    let logger: Logger?
    /// How long one document may take, head and body together (`defaultDeadline` but in tests).
    let deadline: Duration

    /// The HTTP client key-set downloads need: it follows no redirect, since one could move a
    /// fetch from `https` to `http`, or to a host the issuer's configuration never named.
    public static func makeHTTPClient(eventLoopGroup: any EventLoopGroup) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
    }

    /// A process-wide client made by `makeHTTPClient`, on AsyncHTTPClient's default event loops
    /// (for callers without a client of their own; like `HTTPClient.shared`, never shut down).
    public static let sharedHTTPClient = makeHTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)

    /// A downloader over `httpClient` (one from `makeHTTPClient`, which follows no redirect).
    /// `logger`, when given, receives a warning for each key the parser skips; `deadline` bounds
    /// each HTTP download (a discovery document and its key set together).
    public init(httpClient: HTTPClient, logger: Logger?, deadline: Duration = Self.defaultDeadline) {
        self.httpClient = httpClient
        self.logger = logger
        self.deadline = deadline
    }

    /// Reads `issuer`'s key set from its `jwks_file`, `jwks_uri` or discovery document and parses it.
    /// Does not count the fetch (see `countFetch`).
    /// - Throws: `Failure` with outcome `network_error` (unreachable, too slow, body unreadable),
    ///   `http_error` (a status other than 200, redirects included) or `invalid` (unreadable file,
    ///   bad discovery document, no key source, not a JWK set, no usable key, not UTF-8).
    public func download(_ issuer: IssuerConfig) async throws(Failure) -> Document {
        let body: [UInt8]
        var maxAge: Duration?
        var etag: String?
        switch issuer.keySource {
        case .jwksFile(let path):
            do {
                body = Array(try ConfigFile.text(atPath: path).utf8)
            } catch {
                throw Failure(outcome: "invalid", message: "cannot read \(path): \(error.reason)")
            }
        case .jwksURI(let url):
            (body, maxAge, etag) = try await withinDeadline(url) { () async throws(Failure) in try await get(url) }
        case .discovery(let url):
            (body, maxAge, etag) = try await withinDeadline(url) { () async throws(Failure) in try await discover(url, issuer: issuer) }
        case .none:
            throw Failure(outcome: "invalid", message: "issuer has no key source")
        }
        let keySet: JWKSet
        do {
            keySet = try JWKSet.parse(body, issuer: issuer, logger: logger)
        } catch {
            throw Failure(outcome: "invalid", message: "\(error)")
        }
        guard keySet.count > 0 else { throw Failure(outcome: "invalid", message: "no usable key in the JWK set") }
        guard let text = String(validating: body, as: UTF8.self) else { throw Failure(outcome: "invalid", message: "JWKS is not UTF-8") }
        return Document(body: body, text: text, keySet: keySet, maxAge: maxAge, version: Self.version(of: body, etag: etag))
    }

    /// How long one document may take, head and body together.
    public static let defaultDeadline = Duration.seconds(10)

    /// `fetch` within `deadline`, response heads and bodies together: AsyncHTTPClient's timeout
    /// ends with the response head, and a body trickled a byte at a time would hold the caller —
    /// a gateway's start (before it binds its ports) or reload, the control plane's refresh of
    /// every issuer — for as long as the server liked. A discovery document and the key set it
    /// names share one deadline. Cancelling the fetch's task cancels AsyncHTTPClient's request,
    /// head or body.
    private func withinDeadline<Value: Sendable>(_ url: String, _ fetch: @escaping @Sendable () async throws(Failure) -> Value) async throws(Failure) -> Value {
        let deadline = self.deadline
        let outcome = await withTaskGroup(of: Result<Value, Failure>?.self) { group in
            group.addTask {
                do throws(Failure) {
                    return .success(try await fetch())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return Task.isCancelled ? nil : .failure(Failure(outcome: "network_error", message: "\(url): no whole answer within \(deadline)"))
            }
            defer { group.cancelAll() }
            while let next = await group.next() {
                if let result = next { return result }
            }
            return .failure(Failure(outcome: "network_error", message: "\(url): cancelled"))
        }
        return try outcome.get()
    }

    /// An OpenID Connect discovery document, then the key set its `jwks_uri` names.
    private func discover(_ url: String, issuer: IssuerConfig) async throws(Failure) -> (body: [UInt8], maxAge: Duration?, etag: String?) {
        let discoveryBody = try await get(url).body
        let document: JSONValue
        do { document = try JOSEJSONReader.parse(discoveryBody) } catch {
            throw Failure(outcome: "invalid", message: "discovery document: \(error)")
        }
        // OpenID Connect Discovery §4.3: the document must name exactly the configured issuer.
        guard document["issuer"]?.stringValue?.utf8.elementsEqual(issuer.issuer.utf8) == true else {
            throw Failure(outcome: "invalid", message: "discovery document names a different issuer")
        }
        guard let uri = document["jwks_uri"]?.stringValue,
              uri.hasPrefix("https://") || (uri.hasPrefix("http://") && IssuerConfig.isLoopbackHost(String(uri.dropFirst(7)))) else {
            throw Failure(outcome: "invalid", message: "discovery document has no https (or loopback http) jwks_uri")
        }
        return try await get(uri)
    }

    private func get(_ url: String) async throws(Failure) -> (body: [UInt8], maxAge: Duration?, etag: String?) {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "accept", value: "application/json")
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: .seconds(10))
        } catch {
            throw Failure(outcome: "network_error", message: "\(url): \(error)")
        }
        if (300..<400).contains(response.status.code) {
            let location = response.headers.first(name: "location").map { " to \($0)" } ?? ""
            throw Failure(outcome: "http_error",
                          message: "HTTP \(response.status.code) from \(url)\(location): redirects are not followed; configure the final https URL")
        }
        guard response.status == .ok else {
            throw Failure(outcome: "http_error", message: "HTTP \(response.status.code) from \(url)")
        }
        do {
            let body = try await response.body.collect(upTo: Self.maxDocumentBytes)
            return (Array(body.readableBytesView), Self.maxAge(response.headers[canonicalForm: "cache-control"].map(String.init)),
                    response.headers.first(name: "etag"))
        } catch {
            throw Failure(outcome: "network_error", message: "reading the body from \(url): \(error)")
        }
    }

    /// `max-age` from Cache-Control directives; `no-cache`/`no-store` count as zero.
    static func maxAge(_ directives: [String]) -> Duration? {
        var result: Duration?
        for directive in directives.flatMap({ $0.split(separator: ",") }) {
            let trimmed = directive.trimmingCharacters(in: .whitespaces).lowercased()
            if trimmed == "no-cache" || trimmed == "no-store" { return .zero }
            if trimmed.hasPrefix("max-age="), let seconds = Int(trimmed.dropFirst("max-age=".count)), seconds >= 0 {
                result = .seconds(seconds)
            }
        }
        return result
    }

    static func version(of body: [UInt8], etag: String?) -> String {
        if let etag, !etag.isEmpty { return etag }
        return "sha256:" + SHA256.hash(data: body).prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }
}
