/// A configuration problem, located so an operator can fix it without guessing:
/// `gateway.yaml:14:7: routes[0].upstream.targets: expected a list`.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file the value came from (as given on the command line), or `<inline>`.
    public var file: String
    /// 1-based line of the offending node, when known.
    public var line: Int?
    /// 1-based column of the offending node, when known.
    public var column: Int?
    /// Dotted path of the key, e.g. `routes[2].auth.issuers`.
    public var keyPath: String
    /// What is wrong, in words.
    public var message: String

    /// An error in `file` at `line` and `column` (1-based; nil when unknown), about the key at `keyPath`.
    public init(file: String, line: Int?, column: Int?, keyPath: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    /// `file:line:column: keyPath: message`, leaving out the line, column and key path when unknown or empty.
    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        let key = keyPath.isEmpty ? "" : " \(keyPath):"
        return "\(location):\(key) \(message)"
    }
}
