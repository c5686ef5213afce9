import Foundation

/// The timestamps of the two log formats, written without Foundation's formatters.
enum LogTimestamp {
    /// Local time with its UTC offset, `2026-12-06T07:13:28+0000` (swift-log's stream handler's
    /// form, which the `text` format keeps). `localtime_r`, unlike the `localtime` the stream
    /// handler calls, does not look at the time-zone file again on every call.
    static func appendLocal(to text: inout String) {
        var seconds = time(nil)
        var parts = tm()
        localtime_r(&seconds, &parts)
        appendDate(parts, to: &text)
        let offset = parts.tm_gmtoff / 60
        text += offset < 0 ? "-" : "+"
        appendDigits(Int(abs(offset) / 60), width: 2, to: &text)
        appendDigits(Int(abs(offset) % 60), width: 2, to: &text)
    }

    /// UTC with milliseconds, `2026-12-06T07:13:28.123Z` (the `json` format's `ts`).
    static func appendUTCMillis(to text: inout String) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        appendDate(parts, to: &text)
        text += "."
        appendDigits(now.tv_nsec / 1_000_000, width: 3, to: &text)
        text += "Z"
    }

    private static func appendDate(_ parts: tm, to text: inout String) {
        appendDigits(Int(parts.tm_year) + 1900, width: 4, to: &text)
        text += "-"
        appendDigits(Int(parts.tm_mon) + 1, width: 2, to: &text)
        text += "-"
        appendDigits(Int(parts.tm_mday), width: 2, to: &text)
        text += "T"
        appendDigits(Int(parts.tm_hour), width: 2, to: &text)
        text += ":"
        appendDigits(Int(parts.tm_min), width: 2, to: &text)
        text += ":"
        appendDigits(Int(parts.tm_sec), width: 2, to: &text)
    }

    private static func appendDigits(_ value: Int, width: Int, to text: inout String) {
        let digits = String(value)
        if digits.utf8.count < width { text += String(repeating: "0", count: width - digits.utf8.count) }
        text += digits
    }
}
