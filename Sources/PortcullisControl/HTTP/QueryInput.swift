import Hummingbird

/// Query-parameter parsing with 400s that name the parameter.
enum QueryInput {
    static func string(_ request: Request, _ name: String) -> String? {
        request.uri.queryParameters[name[...]].map(String.init)
    }

    static func int(_ request: Request, _ name: String, in range: ClosedRange<Int64>, default value: Int64? = nil) throws -> Int64? {
        guard let text = string(request, name) else { return value }
        guard let number = Int64(text), range.contains(number) else {
            throw APIError.invalid(name, "expected an integer between \(range.lowerBound) and \(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// `wait`: a duration (`5s`, `500ms`, `2` for seconds) up to `max`, or `true` for `max`.
    static func wait(_ request: Request, max: Duration) throws -> Duration? {
        guard let text = string(request, "wait") else { return nil }
        if text == "true" { return max }
        if text == "false" || text == "0" { return nil }
        guard let duration = parseDuration(text) else {
            throw APIError.invalid("wait", "expected a duration such as 5s or 500ms, got '\(text)'")
        }
        guard duration <= max else { throw APIError.invalid("wait", "at most \(max) (max_wait)") }
        return duration
    }

    static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            // Bounded before the conversion, which traps beyond Int64 (the caller bounds it by max_wait).
            guard let number = Double(text.dropLast(suffix.count)), number.isFinite, number >= 0, number * scale < 1e12 else { return nil }
            return .milliseconds(Int64((number * scale * 1000).rounded()))
        }
        guard let number = Double(text), number.isFinite, number >= 0, number < 1e12 else { return nil }
        return .milliseconds(Int64((number * 1000).rounded()))
    }
}
