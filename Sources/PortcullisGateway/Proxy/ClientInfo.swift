import Crypto
import NIOCore
import NIOHTTP1
import NIOSSL

extension HeaderRewriter {
    /// Facts about the client connection: what the forwarding headers need, and the parts of
    /// those headers that are the same for every request on it; its verified client
    /// certificate's hash and whether the trust that verified it still holds (`ListenerSetup`).
    /// One per connection, on its event loop.
    final class ClientInfo {
        /// The TCP peer's address.
        let address: String?
        /// Who may state the client's address in a forwarding header; nil: nobody.
        let trustedProxies: TrustedProxies?
        let isTLS: Bool
        let proto: String
        /// SHA-256 of the DER client certificate the TLS handshake verified, looked up the first
        /// time a request needs it (a route requiring a certificate, a certificate-bound token).
        private var certificateThumbprint: [UInt8]??
        /// The listener's setup and the client-trust generation the connection opened under; nil
        /// on a plaintext listener.
        private let trust: (listener: ListenerSetup, generation: Int)?
        /// Whether the listener required a client certificate when the connection opened
        /// (`client_certificates: required`): everything admitted on it was admitted on the
        /// strength of one.
        let certificateRequired: Bool
        /// The RFC 7239 element without its `host=` part: `for=…;proto=…`.
        private let elementWithoutHost: String
        /// The last `Host` and the element built with it: a client sends the same `Host` on every
        /// request of a connection, and building the element allocated a string per request.
        private var lastHost: String?
        private var lastElement: String?

        init(address: String?, isTLS: Bool, trustedProxies: TrustedProxies? = nil, trust: (listener: ListenerSetup, generation: Int)? = nil,
             certificateRequired: Bool = false) {
            self.address = address
            self.trust = trust
            self.certificateRequired = certificateRequired
            self.trustedProxies = trustedProxies
            self.isTLS = isTLS
            proto = isTLS ? "https" : "http"
            var element = "proto=\(proto)"
            if let address {
                element = (address.utf8.contains(UInt8(ascii: ":")) ? "for=\"[\(address)]\"" : "for=\(address)") + ";" + element
            }
            elementWithoutHost = element
        }

        /// The client's address for a request with `headers`: the TCP peer, or behind a trusted
        /// proxy the address its forwarding header names (`TrustedProxies`).
        func requestAddress(_ headers: HTTPHeaders) -> String? {
            guard let trustedProxies, let address else { return address }
            return trustedProxies.resolve(peer: address, headers: headers).client
        }

        /// Whether no reload has replaced the client trust since the connection opened (one
        /// atomic load).
        var certificateTrustIsCurrent: Bool {
            guard let trust else { return true }
            return trust.listener.generation == trust.generation
        }

        /// The verified client certificate's SHA-256 (RFC 8705 `x5t#S256`), nil without one —
        /// and nil once a reload has replaced the client trust the handshake verified it under:
        /// it no longer counts, for a route requiring a certificate or a token bound to it.
        /// On the connection's event loop, after the handshake (a request has arrived).
        func clientCertificateThumbprint(channel: any Channel) -> [UInt8]? {
            guard certificateTrustIsCurrent else { return nil }
            if let certificateThumbprint { return certificateThumbprint }
            var thumbprint: [UInt8]?
            if isTLS, let certificate = try? channel.pipeline.syncOperations.nioSSL_peerCertificate(),
               let der = try? certificate.toDERBytes() {
                thumbprint = Array(SHA256.hash(data: der))
            }
            certificateThumbprint = .some(thumbprint)
            return thumbprint
        }

        /// The element for a request whose `Host` was `host`.
        func forwardedElement(host: String?) -> String {
            guard let host else { return elementWithoutHost }
            if let lastElement, lastHost == host { return lastElement }
            let element: String
            if HeaderRewriter.isForwardedToken(host) {
                element = elementWithoutHost + ";host=" + host
            } else {
                // A quoted-string; `"` and `\` (never valid in a host) are dropped rather than escaped.
                let quoted = host.utf8.contains { $0 == 0x22 || $0 == 0x5C }
                    ? String(decoding: host.utf8.filter { $0 != 0x22 && $0 != 0x5C }, as: UTF8.self) : host
                element = elementWithoutHost + ";host=\"" + quoted + "\""
            }
            lastHost = host
            lastElement = element
            return element
        }
    }
}
