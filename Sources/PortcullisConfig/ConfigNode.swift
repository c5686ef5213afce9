import Foundation
import Yams

/// A YAML node that remembers where it came from, so every decoding error can name the file,
/// line and key. Decoding is by hand rather than `Codable` because `Decodable` errors carry
/// neither line numbers nor a readable key path, and because unknown keys (typos) must be errors.
public struct ConfigNode: Sendable {
    // Yams.Node is a value type made of Strings and arrays; it is not declared Sendable
    // upstream, so keep only what we need in a Sendable shape.
    indirect enum Value: Sendable {
        case scalar(String, plain: Bool)
        case mapping([(key: String, keyLine: Int?, keyColumn: Int?, value: ConfigNode)])
        case sequence([ConfigNode])
        case null
    }

    let value: Value
    /// The file this node was read from.
    public let file: String
    /// Dotted key path from the document root.
    public let path: String
    /// 1-based line, when known.
    public let line: Int?
    /// 1-based column, when known.
    public let column: Int?

    // MARK: Loading

    /// Reads and parses a YAML file.
    public static func load(file path: String) throws -> ConfigNode {
        let text: String
        do {
            text = try ConfigFile.text(atPath: path)
        } catch {
            throw ConfigError(file: path, line: nil, column: nil, keyPath: "", message: "cannot read file: \(error.reason)")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses YAML text; `file` is only used in error messages.
    public static func parse(yaml: String, file: String = "<inline>") throws -> ConfigNode {
        let node: Yams.Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
            throw ConfigError(file: file, line: context.mark.line, column: context.mark.column,
                              keyPath: duplicates.sorted().joined(separator: ", "), message: "duplicate key")
        } catch let error as YamlError {
            let (mark, message) = describe(error)
            throw ConfigError(file: file, line: mark?.line, column: mark?.column, keyPath: "", message: "invalid YAML: " + message)
        } catch {
            throw ConfigError(file: file, line: nil, column: nil, keyPath: "", message: "invalid YAML: \(error)")
        }
        guard let node else {
            return ConfigNode(value: .mapping([]), file: file, path: "", line: 1, column: 1)
        }
        return try ConfigNode(yams: node, file: file, path: "")
    }

    /// Where and what, on one line. Yams's own description spans several and quotes the offending
    /// line of the file, which may hold a secret: errors name the place, never the value.
    private static func describe(_ error: YamlError) -> (Mark?, String) {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let during = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return (mark, problem + during)
        case .reader(let problem, let offset, _, _):
            return (nil, problem + (offset.map { " at byte \($0)" } ?? ""))
        default:
            return (nil, String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " "))
        }
    }

    init(value: Value, file: String, path: String, line: Int?, column: Int?) {
        self.value = value
        self.file = file
        self.path = path
        self.line = line
        self.column = column
    }

    private init(yams node: Yams.Node, file: String, path: String) throws {
        let mark = node.mark
        switch node {
        case .scalar(let scalar):
            let plain = scalar.style == .plain
            if plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
                self.init(value: .null, file: file, path: path, line: mark?.line, column: mark?.column)
            } else {
                self.init(value: .scalar(scalar.string, plain: plain), file: file, path: path, line: mark?.line, column: mark?.column)
            }
        case .mapping(let mapping):
            var entries: [(key: String, keyLine: Int?, keyColumn: Int?, value: ConfigNode)] = []
            var seen = Set<String>()
            for (keyNode, valueNode) in mapping {
                guard case .scalar(let keyScalar) = keyNode else {
                    throw ConfigError(file: file, line: keyNode.mark?.line, column: keyNode.mark?.column, keyPath: path, message: "mapping keys must be plain strings")
                }
                let key = keyScalar.string
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard seen.insert(key).inserted else {
                    throw ConfigError(file: file, line: keyNode.mark?.line, column: keyNode.mark?.column, keyPath: childPath, message: "duplicate key")
                }
                let child = try ConfigNode(yams: valueNode, file: file, path: childPath)
                entries.append((key, keyNode.mark?.line, keyNode.mark?.column, child))
            }
            self.init(value: .mapping(entries), file: file, path: path, line: mark?.line, column: mark?.column)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            for (index, item) in sequence.enumerated() {
                items.append(try ConfigNode(yams: item, file: file, path: "\(path)[\(index)]"))
            }
            self.init(value: .sequence(items), file: file, path: path, line: mark?.line, column: mark?.column)
        case .alias:
            throw ConfigError(file: file, line: mark?.line, column: mark?.column, keyPath: path, message: "YAML aliases are not supported")
        }
    }

    // MARK: Errors

    /// An error located at this node.
    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, column: column, keyPath: path, message: message)
    }

    // MARK: Shape

    /// True for an explicit YAML null (`~`, `null` or an empty value).
    public var isNull: Bool {
        if case .null = value { return true }
        return false
    }

    /// True for a scalar (a string, number or boolean).
    public var isScalar: Bool {
        if case .scalar = value { return true }
        return false
    }

    /// The node as a mapping whose keys are checked against `allowed` when it is finished.
    public func mapping() throws -> ConfigMapping {
        switch value {
        case .mapping(let entries):
            return ConfigMapping(node: self, entries: entries)
        case .null:
            return ConfigMapping(node: self, entries: [])
        default:
            throw error("expected a mapping (key: value pairs)")
        }
    }

    /// The node as a list; a null counts as an empty list.
    public func sequence() throws -> [ConfigNode] {
        switch value {
        case .sequence(let items): return items
        case .null: return []
        default: throw error("expected a list")
        }
    }

    // MARK: Scalars

    /// The resolved path when the value is a `{file: path}` reference (see `string()`), else nil.
    public var referencedFile: String? {
        guard case .mapping(let entries) = value, entries.count == 1, entries[0].key == "file",
              case .scalar(let path, _) = entries[0].value.value, !path.isEmpty else { return nil }
        return path.hasPrefix("/") ? path : URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(path).path
    }

    /// The scalar's text, with secrets kept outside the file resolved:
    /// - every `${NAME}` in it is replaced by the environment variable `NAME` (an unset variable
    ///   is an error naming it; `$${` stands for a literal `${`);
    /// - a mapping `{file: path}` is replaced by that file's contents without trailing line
    ///   breaks (a relative path is resolved against the config file's folder).
    /// Errors name the variable or file, never the value.
    public func string() throws -> String {
        switch value {
        case .scalar(let text, _):
            return text.contains("$") ? try interpolated(text) : text
        case .mapping(let entries) where entries.count == 1 && entries[0].key == "file":
            let pathNode = entries[0].value
            guard let resolved = referencedFile else { throw pathNode.error("expected a file path") }
            let text: String
            do {
                text = try ConfigFile.text(atPath: resolved)
            } catch let failure {
                throw error("cannot read \(resolved): \(failure.reason)")
            }
            var end = text.endIndex
            while end > text.startIndex, text[text.index(before: end)].isNewline { end = text.index(before: end) }
            return String(text[..<end])
        default:
            throw error("expected a string")
        }
    }

    private func interpolated(_ text: String) throws -> String {
        var result = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("${") {
                result += "${"
                rest = after.dropFirst(2)
            } else if after.hasPrefix("{"), let close = after.firstIndex(of: "}") {
                let name = after[after.index(after: after.startIndex)..<close]
                guard let first = name.first, first == "_" || first.isLetter, name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }) else {
                    throw error("'${\(name)}' is not an environment variable reference (letters, digits and _)")
                }
                guard let resolved = ProcessInfo.processInfo.environment[String(name)] else {
                    throw error("environment variable \(name) is not set")
                }
                result += resolved
                rest = after[after.index(after: close)...]
            } else {
                result += "$"
                rest = after
            }
        }
        return result + rest
    }

    /// A string that must not be empty.
    public func nonEmptyString() throws -> String {
        let text = try string()
        guard !text.isEmpty else { throw error("must not be empty") }
        return text
    }

    /// An integer (decimal, optional sign, `_` separators allowed).
    public func int() throws -> Int {
        guard case .scalar(let text, let plain) = value, plain,
              let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw error("expected an integer")
        }
        return number
    }

    /// An integer within `range`.
    public func int(in range: ClosedRange<Int>) throws -> Int {
        let number = try int()
        guard range.contains(number) else { throw error("must be between \(range.lowerBound) and \(range.upperBound), got \(number)") }
        return number
    }

    /// A floating-point number.
    public func double() throws -> Double {
        guard case .scalar(let text, let plain) = value, plain, let number = Double(text), number.isFinite else {
            throw error("expected a number")
        }
        return number
    }

    /// `true` or `false` (YAML 1.2 spelling only: `yes`/`no` are rejected as ambiguous).
    public func bool() throws -> Bool {
        guard case .scalar(let text, let plain) = value, plain else { throw error("expected true or false") }
        switch text {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: throw error("expected true or false, got '\(text)'")
        }
    }

    /// A duration: a number of seconds, or a number with a unit `ms`, `s`, `m`, `h` (`250ms`, `1.5s`, `5m`).
    public func duration() throws -> Duration {
        guard case .scalar(let text, _) = value else { throw error("expected a duration such as 250ms, 5s or 1m") }
        guard let seconds = Self.parseDuration(text) else {
            throw error("expected a duration such as 250ms, 5s or 1m, got '\(text)'")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    static func parseDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count)), number.isFinite, number >= 0 else { return nil }
            return number * scale
        }
        guard let number = Double(trimmed), number.isFinite, number >= 0 else { return nil }
        return number
    }

    /// A size in bytes: a plain integer or one with a unit `KiB`, `MiB`, `GiB` (or `KB`, `MB`, `GB`, decimal).
    public func byteCount() throws -> Int {
        guard case .scalar(let text, _) = value else { throw error("expected a size such as 8KiB or 1MiB") }
        guard let bytes = Self.parseByteCount(text) else { throw error("expected a size such as 8KiB or 1MiB, got '\(text)'") }
        return bytes
    }

    /// `byteCount()`'s reading of `text`; nil when it is not a size.
    public static func parseByteCount(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            guard let number = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), number >= 0 else { return nil }
            return number.multipliedReportingOverflow(by: scale).overflow ? nil : number * scale
        }
        guard let number = Int(trimmed), number >= 0 else { return nil }
        return number
    }

    /// A list of strings; a single string is accepted as a one-element list.
    public func stringList() throws -> [String] {
        if case .scalar = value { return [try string()] }
        return try sequence().map { try $0.string() }
    }
}

/// The entries of a YAML mapping, consumed key by key. `finish()` rejects keys nobody asked for,
/// so a typo such as `audience:` for `audiences:` is an error and not a silent default.
public struct ConfigMapping: Sendable {
    /// The mapping node itself, for errors about the mapping as a whole.
    public let node: ConfigNode
    private let entries: [(key: String, keyLine: Int?, keyColumn: Int?, value: ConfigNode)]
    private var consumed: Set<String> = []

    init(node: ConfigNode, entries: [(key: String, keyLine: Int?, keyColumn: Int?, value: ConfigNode)]) {
        self.node = node
        self.entries = entries
    }

    /// All keys present, in file order.
    public var keys: [String] { entries.map(\.key) }

    /// The value for `key`, or nil when the key is absent or explicitly null.
    public mutating func optional(_ key: String) -> ConfigNode? {
        consumed.insert(key)
        guard let entry = entries.first(where: { $0.key == key }), !entry.value.isNull else { return nil }
        return entry.value
    }

    /// The value for `key`; a missing key is an error naming the key and the mapping's line.
    public mutating func required(_ key: String) throws -> ConfigNode {
        guard let value = optional(key) else {
            let path = node.path.isEmpty ? key : "\(node.path).\(key)"
            throw ConfigError(file: node.file, line: node.line, column: node.column, keyPath: path, message: "missing required key")
        }
        return value
    }

    /// Every entry, marking all keys as consumed (for free-form maps such as header maps).
    public mutating func all() -> [(key: String, value: ConfigNode)] {
        for entry in entries { consumed.insert(entry.key) }
        return entries.map { ($0.key, $0.value) }
    }

    /// Fails on the first key that no `optional`/`required` call asked for.
    public func finish() throws {
        for entry in entries where !consumed.contains(entry.key) {
            let path = node.path.isEmpty ? entry.key : "\(node.path).\(entry.key)"
            let known = consumed.sorted().joined(separator: ", ")
            throw ConfigError(file: node.file, line: entry.keyLine, column: entry.keyColumn, keyPath: path,
                              message: "unknown key (known keys here: \(known))")
        }
    }
}
