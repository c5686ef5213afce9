import NIOSSL

/// TLS to Redis (`rediss://`, `rediss-sentinel://`): the server's certificate is verified against
/// `caFile` (else the system's roots) and the host from the URL (an IP address is checked against
/// the certificate's IP entries); a data node's must also list `serverName` when set, and a
/// Sentinel's must not. TLS 1.2 or later.
/// With `certificateFile` and `privateKeyFile` the client presents a certificate (mutual TLS,
/// `tls-auth-clients yes`).
public struct RedisTLS: Sendable {
    /// PEM file of the CA certificates to trust; nil trusts the system's roots.
    public var caFile: String?
    /// PEM file of the client certificate chain; set together with `privateKeyFile` or not at all.
    public var certificateFile: String?
    /// PEM file of the client certificate's private key; set together with `certificateFile` or not at all.
    public var privateKeyFile: String?
    /// A DNS name every data node's certificate must list (sent as SNI), checked before `AUTH`,
    /// and that no Sentinel's may list; nil checks data nodes against the host connected to.
    public var serverName: String?

    /// TLS settings from these files and name; the files are read by `makeContext()`.
    public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.serverName = serverName
    }

    /// Reads the files once; every connection of a client shares the context.
    /// - Throws: `RedisError.tls` naming the file that could not be used.
    public func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caFile {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw RedisError.tls("cannot read the Redis CA file \(caFile): \(error)")
            }
        }
        switch (certificateFile, privateKeyFile) {
        case (let certificate?, let key?):
            do {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            } catch {
                throw RedisError.tls("cannot read the Redis client certificate \(certificate): \(error)")
            }
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw RedisError.tls("cannot read the Redis client key \(key): \(error)")
            }
        case (nil, nil):
            break
        default:
            throw RedisError.tls("a Redis client certificate needs both the certificate and the private key")
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw RedisError.tls("cannot set up TLS to Redis: \(error)")
        }
    }
}
