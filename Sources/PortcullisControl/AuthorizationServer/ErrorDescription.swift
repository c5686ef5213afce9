/// The `error_description` of an OAuth error, in the characters RFC 6749 allows it
/// (§4.1.2.1, §5.2: `%x20-21 / %x23-5B / %x5D-7E`) less `<`, `>`, `&` and `` ` ``.
/// Descriptions may quote what the request sent (a scope, a grant type); each other character
/// becomes `?`, so a client showing the description shows no markup, double quotes, line
/// breaks or direction overrides the request chose (`<script>`, U+202E or CR LF would otherwise
/// be echoed into the redirect).
enum ErrorDescription {
    static func sanitized(_ text: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            let value = scalar.value
            let allowed = ((0x20...0x21).contains(value) || (0x23...0x5B).contains(value) || (0x5D...0x7E).contains(value))
                && !"<>&`".unicodeScalars.contains(scalar)
            bytes.append(allowed ? UInt8(value) : UInt8(ascii: "?"))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
