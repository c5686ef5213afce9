/// Query parameter names as the frameworks behind the gateway read them, for the checks that
/// refuse a parameter by name (`_method`, `access_token`): percent-decoded with `+` as a space,
/// then as PHP reads names into `$_GET` (which Symfony and Laravel take them from) — cut at a
/// NUL, leading spaces dropped, `.`, space and `[` taken for `_`, and `name[…]` an array named
/// `name` — in any ASCII letter case. Compared by the raw name alone, `.method`, ` _method`,
/// `_method%00` or `access.token` would reach such an upstream as the name refused.
enum QueryParameterName {
    /// Whether the query of `uri` has a parameter read as `lowercased` (ASCII lower case, the
    /// form `read` gives). Most queries hold neither an escape nor `hint` in any letter case
    /// (a word of the name): those are not read pair by pair.
    static func contains(_ lowercased: String, hint: String, in uri: String) -> Bool {
        let utf8 = uri.utf8
        guard let mark = utf8.firstIndex(of: UInt8(ascii: "?")) else { return false }
        let query = utf8[utf8.index(after: mark)...]
        guard query.contains(UInt8(ascii: "%")) || containsWord(hint, in: query) else { return false }
        let wanted = Array(lowercased.utf8)
        // Rack 2, and Go and Python before 2021, split a query on `;` too.
        for pair in query.split(whereSeparator: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: ";") }) {
            let raw = pair.prefix { $0 != UInt8(ascii: "=") }
            if read(decoded(raw)) == wanted { return true }
        }
        return false
    }

    /// A decoded name as PHP reads it, in ASCII lower case.
    static func read(_ name: [UInt8]) -> [UInt8] {
        var bytes = Array(name.prefix { $0 != 0 }.drop { $0 == UInt8(ascii: " ") })
        if let bracket = bytes.firstIndex(of: UInt8(ascii: "[")), bytes[bracket...].contains(UInt8(ascii: "]")) {
            bytes = Array(bytes[..<bracket])
        }
        return bytes.map { byte -> UInt8 in
            switch byte {
            case UInt8(ascii: "."), UInt8(ascii: " "), UInt8(ascii: "["): UInt8(ascii: "_")
            default: byte | (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? 0x20 : 0)
            }
        }
    }

    /// Whether `bytes` hold `word` (lower case) in any ASCII letter case.
    static func containsWord(_ word: String, in bytes: Substring.UTF8View.SubSequence) -> Bool {
        let word = Array(word.utf8)
        var matched = 0
        for byte in bytes {
            matched = (byte | 0x20) == word[matched] ? matched + 1 : ((byte | 0x20) == word[0] ? 1 : 0)
            if matched == word.count { return true }
        }
        return false
    }

    /// `bytes` with `%XX` escapes and `+` decoded as PHP decodes them: a malformed escape stays
    /// as it is, and the result need not be UTF-8 (so `access_token%00%FF` is still read as
    /// `access_token`).
    static func decoded(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                let high = bytes.index(after: index)
                if high != bytes.endIndex {
                    let low = bytes.index(after: high)
                    if low != bytes.endIndex, let h = RequestTarget.hexValue(bytes[high]), let l = RequestTarget.hexValue(bytes[low]) {
                        out.append(h << 4 | l)
                        index = bytes.index(after: low)
                        continue
                    }
                }
            }
            out.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            index = bytes.index(after: index)
        }
        return out
    }
}
