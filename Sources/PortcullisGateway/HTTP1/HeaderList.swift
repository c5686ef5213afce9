/// The elements of a comma-separated field value (RFC 9110 §5.6.1), read in place.
///
/// `Connection` and `Transfer-Encoding` are read on every request and response; splitting them
/// into an array allocated each time, which showed in allocation profiles of the request path.
enum HeaderList {
    /// Calls `body` with each element of `value`, trimmed of spaces and tabs. Empty elements are
    /// skipped, as RFC 9110 §5.6.1.2 asks of a recipient.
    static func forEachElement<Bytes: BidirectionalCollection<UInt8>>(_ value: Bytes, _ body: (Bytes.SubSequence) -> Void) {
        var rest = value[...]
        while !rest.isEmpty {
            let comma = rest.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
            let element = trimmed(rest[..<comma])
            if !element.isEmpty { body(element) }
            rest = comma == rest.endIndex ? rest[comma...] : rest[rest.index(after: comma)...]
        }
    }

    /// `bytes` without leading and trailing spaces and tabs (OWS).
    static func trimmed<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes) -> Bytes.SubSequence {
        var slice = bytes[...]
        while let first = slice.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return slice
    }
}
