import Crypto
import Foundation
import NIOSSL
import Synchronization

/// The TLS contexts for upstreams, one per distinct setting — the CA bundle's content, whether
/// the certificate is verified, whether ALPN offers `h2` — shared by every route and every reload
/// with that setting. The connection pools key connections by their context's identity: a
/// context per route and per reload would give each route its own connections to one upstream,
/// and leave a reload's predecessors' connections behind. A CA bundle whose content changes gets a new context, so no connection made under
/// the old roots is reused for it.
final class UpstreamTLSContexts: Sendable {
    static let shared = UpstreamTLSContexts()

    private struct Key: Hashable {
        /// SHA-256 of the CA bundle's bytes; nil for the system's roots.
        let roots: [UInt8]?
        let verify: Bool
        let http2: Bool
    }

    /// Taken when routes are built (start, reload), never per request.
    private let contexts = Mutex<[Key: NIOSSLContext]>([:])
    /// Past this many settings the cache starts again: routes hold their own references, so a
    /// context dropped here goes on serving them.
    private static let limit = 64

    /// The context for `tls` (reading `ca_file` now), made on first use.
    func context(for tls: UpstreamTLSConfig, http2: Bool) throws -> NIOSSLContext {
        let bundle = try tls.caFile.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        let key = Key(roots: bundle.map { Array(SHA256.hash(data: $0)) }, verify: tls.verify, http2: http2)
        if let existing = contexts.withLock({ $0[key] }) { return existing }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let bundle {
            // The bytes hashed, so that the key and the roots agree.
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(bundle))
        }
        if !tls.verify { configuration.certificateVerification = .none }
        if http2 { configuration.applicationProtocols = ["h2"] }
        let made = try NIOSSLContext(configuration: configuration)
        return contexts.withLock { contexts in
            if let raced = contexts[key] { return raced }
            if contexts.count >= Self.limit { contexts.removeAll() }
            contexts[key] = made
            return made
        }
    }
}
