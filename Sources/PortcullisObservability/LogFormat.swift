import Foundation
import Logging
import Synchronization

/// How node processes write their logs (access log included).
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json

    /// The gateway's access log: written at `info` whatever the level, since the access log has
    /// its own switch (`access_log`) and a quieter process log should not silence it.
    public static let accessLogLabel = "portcullis.access"

    private static let bootstrapped = Mutex<LogFormat?>(nil)

    /// What both formats write as an escape, never raw: control characters (C0, DEL, C1 — U+0085
    /// ends a line for some readers), the line and paragraph separators, and the bidirectional
    /// overrides and isolates, which make a terminal show a value other than it is.
    static func mustEscape(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return value < 0x20 || (0x7F...0x9F).contains(value) || value == 0x2028 || value == 0x2029
            || (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
    }

    /// The format `bootstrap` set up for the process (`text` before that): what the access log,
    /// which formats its lines itself (`LogLine`), writes.
    public static var process: LogFormat { bootstrapped.withLock { $0 } ?? .text }

    /// Bootstraps swift-log once for the process, writing to stderr.
    public func bootstrap(level: Logger.Level) {
        Self.bootstrapped.withLock { $0 = self }
        switch self {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = TextLogHandler(label: label)
                handler.logLevel = Self.level(level, for: label)
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = Self.level(level, for: label)
                return handler
            }
        }
    }

    static func level(_ level: Logger.Level, for label: String) -> Logger.Level {
        label == accessLogLabel ? min(level, .info) : level
    }
}

/// One JSON object per line: `{"ts", "level", "logger", "msg", ...metadata}`. Integers, finite
/// floating-point numbers and booleans given as `.stringConvertible` are JSON numbers and
/// booleans; everything else is a string. Written by `LineWriter`'s thread.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public let label: String
    private let writer: LineWriter

    public init(label: String, writer: LineWriter = .standardError) {
        self.label = label
        self.writer = writer
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("ts", Self.quote(Self.timestamp())),
            ("level", Self.quote(event.level.rawValue)),
            ("logger", Self.quote(label)),
            ("msg", Self.quote(event.message.description)),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            fields.append((key, Self.json(merged[key]!)))
        }
        var line = "{"
        for (index, (key, value)) in fields.enumerated() {
            if index > 0 { line += "," }
            line += Self.quote(key) + ":" + value
        }
        line += "}\n"
        writer.append(line)
    }

    /// `value` as JSON text: a number or boolean as such, anything else as a string.
    static func json(_ value: Logger.Metadata.Value) -> String {
        if case .stringConvertible(let convertible) = value {
            switch convertible {
            case let number as any BinaryInteger: return number.description
            case let number as Double where number.isFinite: return number.description
            case let flag as Bool: return flag ? "true" : "false"
            default: break
            }
        }
        return quote(flatten(value))
    }

    private static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let items): items.map(flatten).joined(separator: ",")
        case .dictionary(let dict): dict.map { "\($0.key)=\(flatten($0.value))" }.sorted().joined(separator: ",")
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where LogFormat.mustEscape(scalar):
                out += String(format: "\\u%04x", scalar.value)
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    private static func timestamp() -> String {
        var text = ""
        LogTimestamp.appendUTCMillis(to: &text)
        return text
    }
}
