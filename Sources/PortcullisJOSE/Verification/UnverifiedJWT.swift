/// A JWS Compact token taken apart WITHOUT any verification: for diagnostics only
/// (`portcullis token inspect`, logging what a refused token claimed). Nothing here may be used
/// to make an access decision.
public struct UnverifiedJWT: Sendable {
    /// The decoded header.
    public let header: JSONValue
    /// The payload as JSON, or nil when it is not JSON.
    public let claims: JSONValue?
    /// Length of the decoded signature, in bytes.
    public let signatureByteCount: Int

    /// Splits and decodes with the same strict base64url and JSON rules as the verifier.
    public init(parsing token: Substring) throws(TokenRejection) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw TokenRejection(parts.count == 5 ? .unsupportedSerialization : .malformed, "expected three dot-separated parts, found \(parts.count)")
        }
        guard let headerBytes = Base64URL.decode(parts[0]) else { throw TokenRejection(.malformed, "header is not strict base64url") }
        guard let payloadBytes = Base64URL.decode(parts[1]) else { throw TokenRejection(.malformed, "payload is not strict base64url") }
        guard let signature = Base64URL.decode(parts[2]) else { throw TokenRejection(.malformed, "signature is not strict base64url") }
        do {
            header = try JOSEJSONReader.parse(headerBytes)
        } catch {
            throw TokenRejection(.malformed, "header: \(error)")
        }
        claims = try? JOSEJSONReader.parse(payloadBytes)
        signatureByteCount = signature.count
    }
}
