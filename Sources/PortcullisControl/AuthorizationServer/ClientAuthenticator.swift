import Crypto
import Foundation
import Hummingbird
import PortcullisJOSE

/// Authenticates OAuth clients at the token, revocation and introspection endpoints:
/// `client_secret_basic` (RFC 6749 §2.3.1, the id and secret form-encoded inside the Basic
/// credentials) or `client_secret_post`, never both; or, for clients registered with a
/// certificate, `client_id` in the form and the client certificate of the TLS connection
/// (RFC 8705): under `tls_client_auth` (§2.1) it must chain to the public listener's `client_ca`
/// and carry the registered subject DN; under `self_signed_tls_client_auth` (§2.2) it must be one
/// of the certificates registered for the client, compared by SHA-256, whoever issued it. Secrets
/// are configured as SHA-256 hashes and compared in constant time; an unknown client costs the
/// same comparison as a known one.
struct ClientAuthenticator: Sendable {
    let clients: [String: AuthorizationServerConfig.Client]
    private static let dummyDigest = [UInt8](repeating: 0, count: 32)

    init(clients: [AuthorizationServerConfig.Client]) {
        self.clients = Dictionary(uniqueKeysWithValues: clients.map { ($0.id, $0) })
    }

    /// The client certificate of the TLS connection. The handshake has proved the client holds
    /// its key; `chainVerified` says whether it also chains to the listener's `client_ca`.
    struct PresentedCertificate: Sendable {
        var subject: String
        /// SHA-256 of the DER certificate (RFC 8705 `x5t#S256`).
        var sha256: [UInt8]
        /// True when the certificate chains to `client_ca`; false for one accepted only as a
        /// candidate for `self_signed_tls_client_auth`, whose subject vouches for nothing.
        var chainVerified: Bool
    }

    /// The authenticated client, and the certificate it authenticated with under
    /// `tls_client_auth` or `self_signed_tls_client_auth` (its tokens are bound to it).
    /// - Throws: `invalid_client` (401) or `invalid_request` (400).
    func authenticate(authorization: String?, form: [String: String],
                      certificate: PresentedCertificate? = nil) throws(APIError) -> (client: AuthorizationServerConfig.Client, boundTo: PresentedCertificate?) {
        // A public client (RFC 6749 §2.1) identifies itself and proves nothing; PKCE binds its codes.
        if authorization == nil, form["client_secret"] == nil, let id = form["client_id"], let client = ExactMatch.client(clients, id), client.isPublic {
            return (client, nil)
        }
        if authorization == nil, form["client_secret"] == nil, let id = form["client_id"], let client = ExactMatch.client(clients, id),
           let method = client.certificateMethod {
            guard let certificate else { throw Self.invalidClient("client '\(id)' authenticates with a client certificate (\(method)); none was presented") }
            if let subjectDN = client.tlsClientAuthSubjectDN {
                // A self-signed certificate can name any subject: only one client_ca signed counts.
                guard certificate.chainVerified else {
                    throw Self.invalidClient("client '\(id)' needs a client certificate issued by the listener's client_ca (tls_client_auth)")
                }
                guard ExactMatch.equal(certificate.subject, subjectDN) else { throw Self.invalidClient("the client certificate's subject is not the one registered for '\(id)'") }
            } else {
                guard client.selfSignedCertificates.contains(certificate.sha256) else {
                    throw Self.invalidClient("the client certificate is not one registered for '\(id)' (self_signed_tls_client_auth)")
                }
            }
            return (client, certificate)
        }
        return (try authenticateWithSecret(authorization: authorization, form: form), nil)
    }

    private func authenticateWithSecret(authorization: String?, form: [String: String]) throws(APIError) -> AuthorizationServerConfig.Client {
        let id: String
        let secret: String
        if let authorization, authorization.lowercased().hasPrefix("basic ") {
            if form["client_secret"] != nil {
                throw APIError(.badRequest, "invalid_request", "use one client authentication method, not Basic and client_secret together")
            }
            guard let decoded = Data(base64Encoded: String(authorization.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
                  let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":"),
                  let user = FormEncoding.unescape(text[..<colon]), let password = FormEncoding.unescape(text[text.index(after: colon)...]) else {
                throw Self.invalidClient("malformed Basic credentials")
            }
            if let formID = form["client_id"], !ExactMatch.equal(formID, user) {
                throw APIError(.badRequest, "invalid_request", "client_id does not match the Basic credentials")
            }
            id = user
            secret = password
        } else {
            guard let formID = form["client_id"], let formSecret = form["client_secret"] else {
                throw Self.invalidClient("client authentication required (HTTP Basic or client_id and client_secret)")
            }
            id = formID
            secret = formSecret
        }
        let presented = SHA256.hash(data: Array(secret.utf8))
        let client = ExactMatch.client(clients, id)
        // A certificate-authenticated client has no secret (an empty digest never matches).
        let matches = AdminAuthenticator.digest(presented, matches: client?.secretDigest ?? Self.dummyDigest)
        guard let client, matches else { throw Self.invalidClient("unknown client or wrong secret") }
        return client
    }

    /// RFC 6749 §5.2: 401 with a `WWW-Authenticate` challenge (always, so clients learn the scheme).
    static func invalidClient(_ message: String) -> APIError {
        var error = APIError(.unauthorized, "invalid_client", message)
        error.headers[.wwwAuthenticate] = "Basic realm=\"portcullis\""
        return error
    }
}

