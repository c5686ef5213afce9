/// A request target after the path policy (`PathPolicy`): the path the router matches, which is
/// also the path the upstream receives. Hand-written rather than taken from a URL library: the
/// point is to agree byte for byte with what the router checks, and to refuse what common
/// upstream frameworks would read differently (Foundation's URL and swift-nio's parser do
/// neither). Fuzzed with the rest of the request head path (docs/fuzzing.md).
struct RequestTarget: Equatable {
    /// The normalised path, without the query.
    let path: Substring
    /// The upstream request line's target: `path` followed by the query exactly as sent.
    let uri: String
    /// The authority of an absolute-form target (`http://a.test/x` → `a.test`), which the `Host`
    /// header must repeat.
    let authority: Substring?

    /// Why a target was refused (the 400's `error_description`).
    struct Refusal: Error, Equatable, CustomStringConvertible {
        let description: String
    }

    /// Checks and normalises `target` (the request line's second word).
    static func parse(_ target: String, policy: PathPolicy) -> Result<RequestTarget, Refusal> {
        let bytes = target.utf8
        // The common case, over contiguous bytes: an origin-form target whose path needs no change
        // under any policy is forwarded as sent (no allocation).
        if let found = bytes.withContiguousStorageIfAvailable(cleanPathLength), let length = found {
            let end = bytes.index(bytes.startIndex, offsetBy: length)
            return .success(RequestTarget(path: Substring(bytes[..<end]), uri: target, authority: nil))
        }
        guard let first = bytes.first else { return .failure(Refusal(description: "empty request target")) }
        var authority: Substring?
        var pathStart = bytes.startIndex
        if first != UInt8(ascii: "/") {
            guard let scheme = schemeLength(bytes) else {
                return .failure(Refusal(description: "the request target is neither an origin-form path nor an http(s) URI"))
            }
            let authorityStart = bytes.index(bytes.startIndex, offsetBy: scheme)
            var end = authorityStart
            while end != bytes.endIndex, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?"), bytes[end] != UInt8(ascii: "#") {
                end = bytes.index(after: end)
            }
            let found = Substring(bytes[authorityStart..<end])
            guard !found.isEmpty, !found.utf8.contains(UInt8(ascii: "@")), HostHeader.isValid(found) else {
                return .failure(Refusal(description: "the request target's authority is not a valid host[:port]"))
            }
            authority = found
            pathStart = end
        }
        // The path ends at `?`; a `#` anywhere is refused (clients never send fragments).
        var queryStart = pathStart
        while queryStart != bytes.endIndex, bytes[queryStart] != UInt8(ascii: "?") {
            if bytes[queryStart] == UInt8(ascii: "#") { return .failure(Refusal(description: "the request target has a fragment (#)")) }
            queryStart = bytes.index(after: queryStart)
        }
        if bytes[queryStart...].contains(UInt8(ascii: "#")) {
            return .failure(Refusal(description: "the request target has a fragment (#)"))
        }
        let rawPath = Substring(bytes[pathStart..<queryStart])
        let query = Substring(bytes[queryStart...])
        if authority == nil, isClean(rawPath.utf8) {
            // The common case: nothing to change, and the upstream gets the target as sent.
            return .success(RequestTarget(path: rawPath, uri: target, authority: nil))
        }
        let path: String
        switch normalize(rawPath.utf8, policy: policy) {
        case .success(let normalized): path = normalized
        case .failure(let refusal): return .failure(refusal)
        }
        let uri = query.isEmpty ? path : path + query
        return .success(RequestTarget(path: Substring(path), uri: uri, authority: authority))
    }

    /// `http://` or `https://` (any letter case): the length of the scheme and `://`.
    private static func schemeLength(_ bytes: String.UTF8View) -> Int? {
        for scheme in ["http://", "https://"] where bytes.count > scheme.utf8.count {
            if HeaderNameSet.equalsIgnoringASCIICase(bytes.prefix(scheme.utf8.count), scheme.utf8) { return scheme.utf8.count }
        }
        return nil
    }

    /// The length of the path when `target` is origin-form, its path is clean (`isClean`) and it
    /// has no `#`; nil otherwise.
    private static func cleanPathLength(_ target: UnsafeBufferPointer<UInt8>) -> Int? {
        guard target.first == UInt8(ascii: "/") else { return nil }
        let pathEnd = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        guard isClean(target[..<pathEnd]), !target[pathEnd...].contains(UInt8(ascii: "#")) else { return nil }
        return pathEnd
    }

    /// True when the path needs no change under any policy: it starts with `/` and has only
    /// plain path characters, no `%`, `;` or `\`, no empty segment and no `.`/`..` segment.
    private static func isClean(_ path: some Collection<UInt8>) -> Bool {
        guard path.first == UInt8(ascii: "/") else { return false }
        var dots = 0
        var segmentLength = -1  // The leading `/` starts the first segment.
        for byte in path {
            if byte == UInt8(ascii: "/") {
                if segmentLength == 0 || (segmentLength > 0 && dots == segmentLength && dots <= 2) { return false }
                segmentLength = 0
                dots = 0
                continue
            }
            guard isPlainPathByte(byte) else { return false }
            segmentLength += 1
            if byte == UInt8(ascii: ".") { dots += 1 }
        }
        return !(segmentLength > 0 && dots == segmentLength && dots <= 2)
    }

    /// RFC 3986 `pchar` without `%` and `;` (which need a closer look): unreserved, the other
    /// sub-delims, `:` and `@`. Everything else in a path (controls, space, `"<>\^`{|}`, DEL,
    /// non-ASCII) is refused by `normalize`.
    private static func isPlainPathByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
             UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    /// RFC 3986 unreserved: letters, digits, `-`, `.`, `_`, `~` (also what a Host name may hold).
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The full pass, for paths `isClean` did not pass: segment by segment, decode unreserved
    /// escapes, upper-case the others, apply the policy to `;`, escaped slashes, empty and dot
    /// segments.
    static func normalize(_ path: some Collection<UInt8>, policy: PathPolicy) -> Result<String, Refusal> {
        guard path.first == UInt8(ascii: "/") else {
            // An absolute-form URI with an empty path (`http://a.test?x`) means `/`.
            if path.isEmpty { return .success("/") }
            return .failure(Refusal(description: "the request path does not start with /"))
        }
        var segments: [[UInt8]] = []
        var segment: [UInt8] = []
        /// Whether the current segment, after decoding, is `.` or `..` before any `;`.
        var nameDots = 0
        var nameOther = false
        var inParameters = false
        var endsWithDotSegment = false

        func closeSegment(last: Bool) -> Refusal? {
            let isDot = !nameOther && (nameDots == 1 || nameDots == 2)
            defer {
                segment = []
                nameDots = 0
                nameOther = false
                inParameters = false
            }
            if isDot {
                guard policy.dotSegments == .resolve else {
                    return Refusal(description: "the request path has a dot segment (. or ..)")
                }
                if nameDots == 2 {
                    guard !segments.isEmpty else { return Refusal(description: "the request path climbs above the root (..)") }
                    segments.removeLast()
                }
                endsWithDotSegment = last
                return nil
            }
            if segment.isEmpty, !last {
                guard policy.duplicateSlashes == .merge else { return Refusal(description: "the request path has an empty segment (//)") }
                return nil
            }
            endsWithDotSegment = false
            segments.append(segment)
            return nil
        }

        var index = path.index(after: path.startIndex)
        while index != path.endIndex {
            let byte = path[index]
            switch byte {
            case UInt8(ascii: "/"):
                if let refusal = closeSegment(last: false) { return .failure(refusal) }
            case UInt8(ascii: "%"):
                let high = path.index(after: index)
                guard high != path.endIndex, let h = hexValue(path[high]) else { return .failure(Refusal(description: "the request path has a malformed %-escape")) }
                let low = path.index(after: high)
                guard low != path.endIndex, let l = hexValue(path[low]) else { return .failure(Refusal(description: "the request path has a malformed %-escape")) }
                let value = h << 4 | l
                if value == 0 { return .failure(Refusal(description: "the request path has an encoded NUL (%00)")) }
                if isUnreserved(value) {
                    segment.append(value)
                    if !inParameters { if value == UInt8(ascii: ".") { nameDots += 1 } else { nameOther = true } }
                } else {
                    if value == UInt8(ascii: "/") || value == UInt8(ascii: "\\") {
                        guard policy.escapedSlashes == .keep else { return .failure(Refusal(description: "the request path has an encoded slash (%2F or %5C)")) }
                    }
                    segment.append(UInt8(ascii: "%"))
                    segment.append(hexDigit(h))
                    segment.append(hexDigit(l))
                    if !inParameters { nameOther = true }
                }
                index = low
            case UInt8(ascii: ";"):
                guard policy.semicolons == .keep else { return .failure(Refusal(description: "the request path has a ; (segment parameters)")) }
                segment.append(byte)
                inParameters = true
            default:
                guard isPlainPathByte(byte) else {
                    return .failure(Refusal(description: "the request path has a character that must be %-encoded"))
                }
                segment.append(byte)
                if !inParameters { if byte == UInt8(ascii: ".") { nameDots += 1 } else { nameOther = true } }
            }
            index = path.index(after: index)
        }
        if let refusal = closeSegment(last: true) { return .failure(refusal) }
        var result = "/"
        result.reserveCapacity(path.count)
        for (position, part) in segments.enumerated() {
            if position > 0 { result += "/" }
            result += String(decoding: part, as: UTF8.self)
        }
        // `/a/b/..` is `/a/`, and `/a/..` is `/`: a resolved last dot segment leaves a directory.
        if endsWithDotSegment, !segments.isEmpty { result += "/" }
        return .success(result)
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10
    }
}
