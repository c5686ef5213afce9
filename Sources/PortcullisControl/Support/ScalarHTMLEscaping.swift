import Mustache

/// HTML escaping of the pages' values, one Unicode scalar at a time. Written here because
/// swift-mustache's own escaping compares whole `Character`s (grapheme clusters): a quote or an
/// angle bracket joined to a neighbour — a zero-width joiner or a combining mark after it, a
/// prepended mark before it — is a `Character` of its own and would go through unescaped, letting
/// a crafted `state` break out of the sign-in page's hidden field and send the password elsewhere.
struct ScalarHTMLEscaping: MustacheContentType {
    static let name = "PORTCULLIS_HTML"

    private static let registration: Void = MustacheContentTypes.register(ScalarHTMLEscaping(), named: name)

    /// Registers the content type with swift-mustache (once; templates name it when parsed).
    static func register() {
        _ = registration
    }

    func escapeText(_ text: String) -> String {
        Self.escape(text)
    }

    static func escape(_ text: String) -> String {
        var escaped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "<": escaped.append(contentsOf: "&lt;".unicodeScalars)
            case ">": escaped.append(contentsOf: "&gt;".unicodeScalars)
            case "&": escaped.append(contentsOf: "&amp;".unicodeScalars)
            case "\"": escaped.append(contentsOf: "&quot;".unicodeScalars)
            case "'": escaped.append(contentsOf: "&#39;".unicodeScalars)
            default: escaped.append(scalar)
            }
        }
        return String(escaped)
    }
}
