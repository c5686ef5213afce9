/// Request field names a CGI-style upstream may read as another name. CGI, WSGI, Rack, PHP and
/// nginx's `$http_*` read `_` as `-`, and lighttpd passes every character other than a letter or
/// a digit as `_` (its CGI, FastCGI and SCGI environments), so `X_Auth_Subject`,
/// `X-Auth.Subject` and `X~Auth~Subject` all reach such an upstream as `HTTP_X_AUTH_SUBJECT` —
/// the identity field the gateway removes by its dashed name. A name of letters, digits and `-`
/// alone is read as itself; nginx (`ignore_invalid_headers`, on by default) and Apache 2.4 drop
/// the others too. `headers_with_underscores` decides what happens to them.
enum AmbiguousFieldName {
    /// A letter, a digit or `-`.
    @inline(__always)
    static func isPlain(_ byte: UInt8) -> Bool {
        (byte | 0x20) &- UInt8(ascii: "a") < 26 || byte &- UInt8(ascii: "0") < 10 || byte == UInt8(ascii: "-")
    }

    /// Whether `name` holds a character other than a letter, a digit or `-`.
    static func isAmbiguous(_ name: String) -> Bool {
        name.utf8.withContiguousStorageIfAvailable { !$0.allSatisfy(isPlain) } ?? !name.utf8.allSatisfy(isPlain)
    }

    /// `name` as such an upstream may read it: every character other than a letter, a digit or
    /// `-` as `-`.
    static func dashed(_ name: String) -> [UInt8] {
        name.utf8.map { isPlain($0) ? $0 : UInt8(ascii: "-") }
    }
}
