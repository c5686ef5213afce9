import Logging

/// The `text` log format: swift-log's `StreamLogHandler` line (`… level label: key=value …
/// message`) with every message and metadata value escaped first. The stream handler writes
/// values as they are, so a value a client chooses — a token's `sub` in the access log, an unknown
/// `kid` — could end the line and forge another, or carry terminal escape sequences. Here control
/// characters (C0, DEL, C1, the Unicode line and paragraph separators, the bidirectional
/// embedding, override and isolate controls) are written as `\n`, `\t` or `\u{…}`, and a
/// metadata value with a space, a quote, `=` or a backslash is quoted (logfmt's rule), so each
/// line is one event and each `key=value` one field. Handler metadata is stored escaped (reading
/// it back gives the escaped text).
public struct TextLogHandler: LogHandler {
    private var stream: StreamLogHandler

    public init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { stream.metadata }
        set { stream.metadata = newValue.mapValues(Self.escaped) }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { stream[metadataKey: key] }
        set { stream[metadataKey: key] = newValue.map(Self.escaped) }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: Self.escape(event.message.description, quoting: false))
        event.metadata = event.metadata?.mapValues(Self.escaped)
        stream.log(event: event)
    }

    static func escaped(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(escape(text, quoting: true))
        case .stringConvertible(let convertible): .string(escape(convertible.description, quoting: true))
        case .array(let items): .array(items.map(escaped))
        case .dictionary(let entries): .dictionary(entries.mapValues(escaped))
        }
    }

    /// `text` with control characters escaped; with `quoting`, in double quotes when it holds a
    /// space, a quote, `=` or a backslash (or is empty).
    static func escape(_ text: String, quoting: Bool) -> String {
        // Most values (ids, paths, numbers) are plain printable ASCII: returned as they are.
        if !text.isEmpty, text.utf8.allSatisfy({ byte in
            byte > 0x20 && byte < 0x7F && (!quoting || (byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte != UInt8(ascii: "=")))
        }) {
            return text
        }
        var out = ""
        var needsQuotes = quoting && text.isEmpty
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
                || (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value):
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            case "\"", "\\":
                needsQuotes = needsQuotes || quoting
                out += quoting ? "\\" + String(scalar) : String(scalar)
            case " ", "=":
                needsQuotes = needsQuotes || quoting
                out.unicodeScalars.append(scalar)
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return needsQuotes ? "\"" + out + "\"" : out
    }
}
