import Foundation
import PortcullisJOSE

/// Human-readable output of `portcullis admin`: aligned tables and value formatting.
enum AdminOutput {
    /// Columns padded to the widest cell; the last column is not padded.
    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }

    /// `text` with control characters, line and paragraph separators and bidirectional formatting
    /// characters shown as `\u{…}`: a value written before such characters were refused (or by
    /// another tool) cannot forge rows on the operator's terminal or move its cursor.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isHidden) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isHidden(scalar) { out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}" } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    private static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: true
        default: scalar.properties.isBidiControl
        }
    }

    /// A JSON scalar as text ("-" for null or missing).
    static func text(_ value: JSONValue?) -> String {
        guard let value else { return "-" }
        switch value {
        case .null: return "-"
        case .string(let text): return printable(text)
        case .bool(let flag): return flag ? "yes" : "no"
        case .integer(let number): return String(number)
        case .number(let number): return String(format: number < 10 ? "%.3f" : "%.1f", number)
        case .array(let items): return items.isEmpty ? "-" : items.map { text($0) }.joined(separator: ",")
        case .object(let members): return members.keys.sorted().map { "\($0)=\(text(members[$0]))" }.joined(separator: ",")
        }
    }

    /// Unix milliseconds as an ISO 8601 UTC time.
    static func time(millis value: JSONValue?) -> String {
        guard let millis = value?.int64Value else { return "-" }
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    static func duration(seconds value: JSONValue?) -> String {
        guard let seconds = value?.doubleValue else { return "-" }
        if seconds < 1 { return String(format: "%.0fms", seconds * 1000) }
        if seconds < 120 { return String(format: "%.1fs", seconds) }
        if seconds < 7200 { return String(format: "%.0fm", seconds / 60) }
        if seconds < 172_800 { return String(format: "%.1fh", seconds / 3600) }
        return String(format: "%.1fd", seconds / 86_400)
    }
}
