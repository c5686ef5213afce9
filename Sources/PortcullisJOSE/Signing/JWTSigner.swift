/// Issues JWS Compact tokens with one key.
public struct JWTSigner: Sendable {
    /// The private key tokens are signed with; it decides `alg`.
    public let key: SigningKey
    /// The `kid` written in every header.
    public let keyID: String

    /// A signer with `key`, naming it `keyID`.
    public init(key: SigningKey, keyID: String) {
        self.key = key
        self.keyID = keyID
    }

    /// Signs `claims` (a JSON object). The header carries `alg`, `kid` and `typ` (default `at+jwt`,
    /// RFC 9068); `extraHeader` members are added and may override them, and a `.null` there removes
    /// the member (tests use this to craft hostile headers).
    public func sign(claims: JSONValue, type: String = "at+jwt", extraHeader: [String: JSONValue] = [:]) throws -> String {
        guard case .object = claims else { throw JWKError("claims must be a JSON object") }
        var header: [String: JSONValue] = ["alg": .string(key.algorithm.rawValue), "kid": .string(keyID), "typ": .string(type)]
        header.merge(extraHeader) { _, new in new }
        header = header.filter { !$0.value.isNull }
        let input = Base64URL.encode(Array(JSONWriter.serialize(.object(header)).utf8)) + "." + Base64URL.encode(Array(JSONWriter.serialize(claims).utf8))
        let signature = try key.sign(Array(input.utf8))
        return input + "." + Base64URL.encode(signature)
    }
}
