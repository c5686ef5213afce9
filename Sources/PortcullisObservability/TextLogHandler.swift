import Logging

/// The `text` log format: swift-log's `StreamLogHandler` line (`… level label: key=value …
/// message`) with every message and metadata value escaped first, written by `LineWriter`'s
/// thread rather than the caller's. The stream handler writes values as they are, so a value a client chooses — a token's `sub` in the access log, an unknown
/// `kid` — could end the line and forge another, or carry terminal escape sequences. Here control
/// characters (C0, DEL, C1, the Unicode line and paragraph separators, the bidirectional
/// embedding, override and isolate controls) are written as `\n`, `\t` or `\u{…}`, and a
/// metadata value with a space, a quote, `=` or a backslash is quoted (logfmt's rule), so each
/// line is one event and each `key=value` one field. Handler metadata is stored escaped (reading
/// it back gives the escaped text).
public struct TextLogHandler: LogHandler {
    /// The least severe level that is logged; `info` unless set.
    public var logLevel: Logger.Level = .info
    /// Metadata fetched for every line; it overrides `metadata`, and an event's own metadata overrides it.
    public var metadataProvider: Logger.MetadataProvider?
    /// The logger's label, written after the level.
    public let label: String
    private let writer: LineWriter
    private var stored: Logger.Metadata = [:]

    /// A handler for the logger `label` that hands its lines to `writer` (standard error unless given).
    public init(label: String, writer: LineWriter = .standardError) {
        self.label = label
        self.writer = writer
    }

    /// Metadata written on every line, stored escaped: reading it back gives the escaped values.
    public var metadata: Logger.Metadata {
        get { stored }
        set { stored = newValue.mapValues(Self.escaped) }
    }

    /// One entry of `metadata`, stored escaped; nil when absent.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { stored[key] }
        set { stored[key] = newValue.map(Self.escaped) }
    }

    /// The stream handler's line (`ts level label: key=value … [source] message`), handed to
    /// `writer`, whose thread writes it: the thread that logs — an event loop — never waits on
    /// stderr.
    public func log(event: LogEvent) {
        var fields = stored
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            fields.merge(provided.mapValues(Self.escaped)) { $1 }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            fields.merge(explicit.mapValues(Self.escaped)) { $1 }
        }
        if let error = event.error {
            fields["error.message"] = Self.escaped(.string("\(error)"))
            fields["error.type"] = Self.escaped(.string(String(reflecting: type(of: error))))
        }
        var line = ""
        LogTimestamp.appendLocal(to: &line)
        line += " \(event.level.rawValue)\(label.isEmpty ? "" : " ")\(label):"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        line += " [\(event.source)] \(Self.escape(event.message.description, quoting: false))\n"
        writer.append(line)
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
            case _ where LogFormat.mustEscape(scalar):
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
