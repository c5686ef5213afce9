/// Text a party outside the cluster chose (a request path, a node id a Redis writer added), cut
/// before it is logged or stored, so that its size costs no more than the bound.
public enum BoundedText {
    /// `text`, or its first `maxBytes` bytes (whole UTF-8 scalars) followed by how long it was.
    public static func cut(_ text: String, to maxBytes: Int) -> String {
        let length = text.utf8.count
        guard length > maxBytes else { return text }
        return String(decoding: text.utf8.prefix(maxBytes), as: UTF8.self) + "…(cut, \(length) bytes)"
    }
}
