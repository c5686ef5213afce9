/// RFC 3339 §5.6 `date-time`, read strictly: Foundation's `ISO8601DateFormatter` rolls impossible
/// dates over (`2026-02-30` is 2 March, hour 24 the next day, an offset of `+24:00` accepted), so a
/// mistyped cut-off would be written as another instant instead of refused. Written by hand
/// because no package here parses RFC 3339 without that leniency; it is small and pure (unit
/// tests: `RFC3339TimeTests`).
enum RFC3339Time {
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// `text` in Unix milliseconds (a fraction beyond milliseconds is cut), or why it is not a
    /// valid RFC 3339 time. A leap second (`:60`) is read as the last millisecond of its minute.
    static func millis(_ text: String) -> Result<Int64, Invalid> {
        let b = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= b.count else { return nil }
            var value = 0
            for byte in b[start..<(start + count)] {
                guard byte &- UInt8(ascii: "0") < 10 else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        func at(_ index: Int, _ expected: Character) -> Bool { index < b.count && b[index] == expected.asciiValue! }
        guard let year = digits(0, 4), at(4, "-"), let month = digits(5, 2), at(7, "-"), let day = digits(8, 2),
              at(10, "T") || at(10, "t") || at(10, " "),
              let hour = digits(11, 2), at(13, ":"), let minute = digits(14, 2), at(16, ":"), let second = digits(17, 2) else {
            return .failure(Invalid(description: "not YYYY-MM-DDTHH:MM:SS followed by Z or an offset"))
        }
        var index = 19
        var fractionMillis = 0
        if at(index, ".") {
            index += 1
            var count = 0
            while index < b.count, b[index] &- UInt8(ascii: "0") < 10 {
                if count < 3 { fractionMillis = fractionMillis * 10 + Int(b[index] - UInt8(ascii: "0")) }
                count += 1
                index += 1
            }
            guard count > 0 else { return .failure(Invalid(description: "a '.' without fraction digits")) }
            if count < 3 { for _ in count..<3 { fractionMillis *= 10 } }
        }
        var offsetMinutes = 0
        if at(index, "Z") || at(index, "z") {
            index += 1
        } else if at(index, "+") || at(index, "-") {
            let sign = at(index, "-") ? -1 : 1
            guard let offsetHour = digits(index + 1, 2), at(index + 3, ":"), let offsetMinute = digits(index + 4, 2) else {
                return .failure(Invalid(description: "the offset is not +HH:MM or -HH:MM"))
            }
            guard offsetHour <= 23, offsetMinute <= 59 else { return .failure(Invalid(description: "the offset is out of range")) }
            offsetMinutes = sign * (offsetHour * 60 + offsetMinute)
            index += 6
        } else {
            return .failure(Invalid(description: "no Z or offset"))
        }
        guard index == b.count else { return .failure(Invalid(description: "text after the offset")) }
        guard (1...12).contains(month) else { return .failure(Invalid(description: "month \(month) does not exist")) }
        guard (1...daysIn(month: month, year: year)).contains(day) else {
            return .failure(Invalid(description: "day \(day) does not exist in \(year)-\(month < 10 ? "0" : "")\(month)"))
        }
        guard hour <= 23, minute <= 59, second <= 60 else { return .failure(Invalid(description: "the time of day is out of range")) }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59)) - Int64(offsetMinutes * 60)
        return .success(seconds * 1000 + Int64(second == 60 ? 999 : fractionMillis))
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
