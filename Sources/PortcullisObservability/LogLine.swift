import Foundation
import Logging

/// One log line built directly in a `LogFormat`, the same bytes the process's log handler writes
/// for an event with these fields (`TextLogHandler`: `ts level label: key=value … [source]
/// message`; `JSONLogHandler`: `{"ts", "level", "logger", "msg", key…}`), for a caller that logs
/// at a rate where building `Logger.Metadata` — a dictionary, sorted again for every line — costs
/// more than the line. Fields must be added in ascending key order, as both handlers sort them.
public struct LogLine {
    private let format: LogFormat
    private let trailer: String
    private var text: String
    #if DEBUG
    private var lastKey = ""
    #endif

    /// Starts a line stamped with the current time for the logger `label` at `level`; `source` and
    /// `message` go where `format` puts them.
    public init(format: LogFormat, label: String, level: Logger.Level = .info, source: String, message: String) {
        self.format = format
        text = ""
        text.reserveCapacity(320)
        switch format {
        case .text:
            LogTimestamp.appendLocal(to: &text)
            text += " \(level.rawValue) \(label):"
            trailer = " [\(source)] \(TextLogHandler.escape(message, quoting: false))\n"
        case .json:
            text += "{\"ts\":\""
            LogTimestamp.appendUTCMillis(to: &text)
            text += "\",\"level\":\(JSONLogHandler.quote(level.rawValue)),\"logger\":\(JSONLogHandler.quote(label)),\"msg\":\(JSONLogHandler.quote(message))"
            trailer = "}\n"
        }
    }

    /// A string field: escaped (and quoted where needed) in text, a JSON string in JSON.
    public mutating func add(_ key: String, _ value: String) {
        appendKey(key)
        switch format {
        case .text: text += TextLogHandler.escape(value, quoting: true)
        case .json: text += JSONLogHandler.quote(value)
        }
    }

    /// An integer field: a JSON number in JSON.
    public mutating func add(_ key: String, integer value: Int) {
        appendKey(key)
        text += String(value)
    }

    /// A finite number field (`description`, as the handlers write a `Double`): a JSON number in JSON.
    public mutating func add(_ key: String, number value: Double) {
        appendKey(key)
        switch format {
        case .text: text += TextLogHandler.escape(value.description, quoting: true)
        case .json: text += value.isFinite ? value.description : JSONLogHandler.quote(value.description)
        }
    }

    /// The whole line, ending with a line feed.
    public consuming func finish() -> String {
        text + trailer
    }

    private mutating func appendKey(_ key: String) {
        #if DEBUG
        assert(key > lastKey, "log fields must come in ascending key order: \(key) after \(lastKey)")
        lastKey = key
        #endif
        switch format {
        case .text: text += " \(key)="
        case .json: text += ",\(JSONLogHandler.quote(key)):"
        }
    }
}
