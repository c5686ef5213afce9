/// A list of claim values as one header value: space-separated, and unambiguous.
///
/// An element that is empty, or holds a space, a control character, a double quote, a backslash
/// or any non-ASCII byte, is written as an RFC 9110 quoted-string (`"a b"`, with `"` and `\`
/// escaped by `\`), so an element that holds a space can never read as two elements — nor one
/// holding a no-break or other Unicode space, on which Python's `str.split()` and Go's
/// `strings.Fields` split too. Every other element is written bare: a list of plain scopes reads
/// `read write`.
public enum SpaceSeparatedList {
    /// The elements joined with single spaces, those that need it quoted.
    public static func encode(_ elements: [String]) -> String {
        guard elements.contains(where: needsQuoting) else { return elements.joined(separator: " ") }
        return elements.map { needsQuoting($0) ? quoted($0) : $0 }.joined(separator: " ")
    }

    static func needsQuoting(_ element: String) -> Bool {
        // Control characters too: a header writer turns them into spaces.
        element.isEmpty || element.utf8.contains { byte in
            byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
        }
    }

    static func quoted(_ element: String) -> String {
        var result = "\""
        result.reserveCapacity(element.utf8.count + 2)
        for character in element.unicodeScalars {
            if character == "\"" || character == "\\" { result.append("\\") }
            result.unicodeScalars.append(character)
        }
        result.append("\"")
        return result
    }
}
