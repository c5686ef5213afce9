import Foundation
import Logging
import Synchronization

/// One JSON object per line: `{"ts", "level", "logger", "msg", ...metadata}`. Integers, finite
/// floating-point numbers and booleans given as `.stringConvertible` are JSON numbers and
/// booleans; everything else is a string. Written by `LineWriter`'s thread.
public struct JSONLogHandler: LogHandler {
    /// Metadata written on every line; an event's own metadata wins for the same key.
    public var metadata: Logger.Metadata = [:]
    /// The least severe level that is logged; `info` unless set.
    public var logLevel: Logger.Level = .info
    /// The logger's label, written as the `logger` field.
    public let label: String
    private let writer: LineWriter

    /// A handler for the logger `label` that hands its lines to `writer` (standard error unless given).
    public init(label: String, writer: LineWriter = .standardError) {
        self.label = label
        self.writer = writer
    }

    /// One entry of `metadata`; nil when absent.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Formats `event` as one JSON line, metadata keys sorted, and queues it on the writer; does not
    /// wait for the write.
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
