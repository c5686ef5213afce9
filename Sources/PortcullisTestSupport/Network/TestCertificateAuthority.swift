import Foundation

/// A throw-away certificate authority made with the `openssl` command, for tests of TLS between
/// real processes: a CA certificate and leaf certificates (P-256, one day) it issues, usable for
/// servers and clients alike.
public struct TestCertificateAuthority: Sendable {
    /// The folder holding every file.
    public let directory: String
    /// The CA certificate (PEM).
    public let certificate: String
    private let key: String

    /// A leaf certificate and its key (PEM files).
    public struct Leaf: Sendable {
        public let certificate: String
        public let privateKey: String
    }

    /// Makes a new CA in a fresh temporary folder.
    public static func make(name: String = "Portcullis Test CA") throws -> TestCertificateAuthority {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ca")
        let authority = TestCertificateAuthority(directory: directory, certificate: directory + "/ca.pem", key: directory + "/ca.key")
        try authority.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                               "-keyout", authority.key, "-out", authority.certificate, "-subj", "/CN=\(name)", "-days", "1",
                               "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return authority
    }

    /// Issues a certificate for `name` (its subject CN), valid for the DNS names and IP addresses
    /// given, for both server and client authentication. `subject` (OpenSSL's `/O=…/CN=…`, in the
    /// order the certificate lists its RDNs) replaces the subject `/CN=name`.
    public func issue(_ name: String, subject: String? = nil, dnsNames: [String] = ["localhost"],
                      ipAddresses: [String] = ["127.0.0.1"]) throws -> Leaf {
        let base = directory + "/" + (subject ?? name).map { $0.isLetter || $0.isNumber ? $0 : "-" }.reduce("") { $0 + String($1) }
        let leaf = Leaf(certificate: base + ".pem", privateKey: base + ".key")
        try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", leaf.privateKey, "-out", base + ".csr", "-subj", subject ?? "/CN=\(name)"])
        let names = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }
        let extensions = (names.isEmpty ? "" : "subjectAltName=\(names.joined(separator: ","))\n")
            + "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
        try extensions.write(toFile: base + ".ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", base + ".csr", "-CA", certificate, "-CAkey", key, "-CAcreateserial",
                     "-out", leaf.certificate, "-days", "1", "-extfile", base + ".ext"])
        return leaf
    }

    /// A self-signed client certificate no CA vouches for (RFC 8705 §2.2
    /// `self_signed_tls_client_auth`): P-256, one day, `CA:FALSE`, `clientAuth`, with a new key on
    /// every call and the subject given (`/CN=robot-1`), in a fresh temporary folder. No `keyUsage`
    /// extension: without `keyCertSign` in it, BoringSSL would not take the certificate as its own
    /// issuer, and a gateway could not trust it by listing it in `client_ca`.
    public static func selfSigned(subject: String) throws -> Leaf {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-self-signed")
        let leaf = Leaf(certificate: directory + "/certificate.pem", privateKey: directory + "/certificate.key")
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", leaf.privateKey, "-out", leaf.certificate, "-subj", subject, "-days", "1",
                     "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth"])
        return leaf
    }

    private func openssl(_ arguments: [String]) throws {
        try Self.openssl(arguments)
    }

    private static func openssl(_ arguments: [String]) throws {
        let result = try runCommand("/usr/bin/openssl", arguments)
        guard result.status == 0 else { throw FixtureError("openssl \(arguments.first ?? ""): \(result.stderr)") }
    }
}
