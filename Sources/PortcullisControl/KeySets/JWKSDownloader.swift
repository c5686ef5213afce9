import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import PortcullisJOSE

/// Gets an issuer's JWKS document as bytes, for publishing to the cluster as fetched.
/// (`KeySetLoader` in PortcullisJOSE installs parsed keys into a local store and does not keep the
/// document, which the control plane must publish verbatim so nodes and their MACs agree.)
struct JWKSDownloader: Sendable {
    struct Failure: Error, CustomStringConvertible {
        /// `http_error`, `network_error` or `invalid` (the labels of `portcullis_jwks_fetch_total`).
        var outcome: String
        var message: String
        var description: String { "\(outcome): \(message)" }
    }

    struct Document: Sendable {
        var text: String
        var keySet: JWKSet
        /// `Cache-Control: max-age`, when the server gave one.
        var maxAge: Duration?
    }

    static let maxDocumentBytes = 1 << 20
    let httpClient: HTTPClient
    let logger: Logger

    func download(_ issuer: IssuerConfig) async throws(Failure) -> Document {
        let body: [UInt8]
        var maxAge: Duration?
        switch issuer.keySource {
        case .jwksFile(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw Failure(outcome: "invalid", message: "cannot read \(path)")
            }
            body = Array(data)
        case .jwksURI(let url):
            (body, maxAge) = try await get(url)
        case .discovery(let url):
            let (discoveryBody, _) = try await get(url)
            let document: JSONValue
            do { document = try JOSEJSONReader.parse(discoveryBody) } catch {
                throw Failure(outcome: "invalid", message: "discovery document: \(error)")
            }
            // OpenID Connect Discovery §4.3: the document must name exactly the configured issuer.
            guard document["issuer"]?.stringValue == issuer.issuer else {
                throw Failure(outcome: "invalid", message: "discovery document names a different issuer")
            }
            guard let uri = document["jwks_uri"]?.stringValue, Self.acceptableURL(uri) else {
                throw Failure(outcome: "invalid", message: "discovery document has no https (or loopback http) jwks_uri")
            }
            (body, maxAge) = try await get(uri)
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
        return Document(text: text, keySet: keySet, maxAge: maxAge)
    }

    private static func acceptableURL(_ text: String) -> Bool {
        if text.hasPrefix("https://") { return true }
        guard text.hasPrefix("http://") else { return false }
        let authority = text.dropFirst(7).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let host = authority.hasPrefix("[") ? String(authority.prefix { $0 != "]" }.dropFirst()) : String(authority.split(separator: ":").first ?? "")
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    private func get(_ url: String) async throws(Failure) -> ([UInt8], Duration?) {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "accept", value: "application/json")
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: .seconds(10))
        } catch {
            throw Failure(outcome: "network_error", message: "\(url): \(error)")
        }
        guard response.status == .ok else {
            throw Failure(outcome: "http_error", message: "HTTP \(response.status.code) from \(url)")
        }
        do {
            let body = try await response.body.collect(upTo: Self.maxDocumentBytes)
            return (Array(body.readableBytesView), Self.maxAge(response.headers[canonicalForm: "cache-control"].map(String.init)))
        } catch {
            throw Failure(outcome: "network_error", message: "reading the body from \(url): \(error)")
        }
    }

    static func maxAge(_ directives: [String]) -> Duration? {
        var result: Duration?
        for directive in directives.flatMap({ $0.split(separator: ",") }) {
            let trimmed = directive.trimmingCharacters(in: .whitespaces).lowercased()
            if trimmed == "no-cache" || trimmed == "no-store" { return .zero }
            if trimmed.hasPrefix("max-age="), let seconds = Int(trimmed.dropFirst(8)), seconds >= 0 { result = .seconds(seconds) }
        }
        return result
    }
}
