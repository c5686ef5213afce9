import NIOHTTP1

/// HTTP's optional whitespace (spaces and tabs) around a field value, which is not part of the
/// value (RFC 9110 §5.5, RFC 9112 §5: `field-line = field-name ":" OWS field-value OWS`).
///
/// NIO's HTTP/1.1 decoder (llhttp) drops the leading whitespace but keeps the trailing. Left in,
/// a client gets one value read two ways: the gateway keys a rate limit on `KEY ` and `KEY\t` as
/// two keys, each with a budget of its own, while an upstream's parser (nginx, Go, Node, h11)
/// strips them and sees one API key. So a request head's values are trimmed once, as it comes,
/// before anything reads them. HTTP/2 needs none of this: the gateway resets a stream with such a
/// value (`HTTP2HeaderBlocks`).
enum OptionalWhitespace {
    /// Whether `value` ends (or starts) with a space or a tab.
    static func pads(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard let last = utf8.last, let first = utf8.first else { return false }
        return isSpace(last) || isSpace(first)
    }

    /// `headers` with every value trimmed of leading and trailing spaces and tabs; names, order
    /// and repeated fields as they were.
    static func trimmed(_ headers: HTTPHeaders) -> HTTPHeaders {
        HTTPHeaders(headers.map { ($0.name, pads($0.value) ? $0.value.trimmingASCIISpaces() : $0.value) })
    }

    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
}

extension String {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace), cut by bytes:
    /// by `Character`s, a space after a prepended mark (U+0600 …) is part of one grapheme and
    /// would stay, so a value could still end in a space after trimming.
    func trimmingASCIISpaces() -> String {
        let bytes = utf8
        guard let first = bytes.firstIndex(where: { !OptionalWhitespace.isSpace($0) }),
              let last = bytes.lastIndex(where: { !OptionalWhitespace.isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
