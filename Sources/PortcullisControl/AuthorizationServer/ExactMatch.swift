/// Byte-for-byte comparison of the names a client sends: client ids, redirect URIs and scopes.
/// Swift's `==` on `String` (and a `String`-keyed dictionary) compares by canonical equivalence:
/// a KELVIN SIGN would take the place of a registered `K`, so a redirect URI nobody registered
/// would be accepted, a client id spelled another way would find the client, and a scope so
/// spelled would be granted in that spelling. RFC 6749 §3.1.2.3 and RFC 9700 §4.1.3 ask for
/// simple string comparison.
enum ExactMatch {
    static func equal(_ a: String, _ b: String) -> Bool {
        a.utf8.elementsEqual(b.utf8)
    }

    static func contains(_ list: [String], _ value: String) -> Bool {
        list.contains { equal($0, value) }
    }

    /// The client registered under exactly `id`.
    static func client(_ clients: [String: AuthorizationServerConfig.Client], _ id: String) -> AuthorizationServerConfig.Client? {
        guard let client = clients[id], equal(client.id, id) else { return nil }
        return client
    }
}
