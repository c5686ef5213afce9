/// A token's `cnf` claim (RFC 7800): the key the token is bound to, which its presenter must
/// prove it holds. Read once when the token is verified (the token cache keeps it).
public enum TokenConfirmation: Sendable, Equatable {
    /// No `cnf`: a bearer token.
    case none
    /// RFC 8705 §3.1 `x5t#S256`: the SHA-256 of the DER client certificate the token is bound to.
    case certificate(sha256: [UInt8])
    /// A `cnf` this gateway cannot check (`jkt` for DPoP, `jwk`, a malformed `x5t#S256`): accepting
    /// such a token as a bearer token would drop the binding its issuer asked for.
    case unsupported(String)

    init(claims: JSONValue) {
        guard let cnf = claims["cnf"] else {
            self = .none
            return
        }
        guard let members = cnf.objectValue else {
            self = .unsupported("cnf is not an object")
            return
        }
        if let thumbprint = members["x5t#S256"] {
            guard let text = thumbprint.stringValue, let bytes = Base64URL.decode(text), bytes.count == 32 else {
                self = .unsupported("cnf x5t#S256 is not a base64url SHA-256")
                return
            }
            self = .certificate(sha256: bytes)
            return
        }
        self = .unsupported("cnf names a confirmation method other than x5t#S256 (\(members.keys.sorted().joined(separator: ", ")))")
    }
}
