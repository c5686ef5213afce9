import Foundation
import Logging
import Synchronization

/// How node processes write their logs (access log included).
public enum LogFormat: String, Sendable, CaseIterable {
    /// `ts level label: key=value … [source] message` lines (`TextLogHandler`).
    case text
    /// One JSON object per line (`JSONLogHandler`).
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
