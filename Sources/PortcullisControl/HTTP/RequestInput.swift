import Hummingbird
import PortcullisJOSE

/// Reading request input strictly: malformed input is a 400 that says what is wrong, never a
/// silent default.
enum RequestInput {
    static let maxBodyBytes = 64 * 1024

    /// The body as a JSON object; an empty body is an empty object.
    static func jsonObject(_ request: Request) async throws -> [String: JSONValue] {
        let bytes = try await body(request)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [:] }
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw APIError(.unsupportedMediaType, "invalid_request", "send the body as application/json", field: "body")
        }
        let value: JSONValue
        do {
            value = try JOSEJSONReader.parse(bytes)
        } catch {
            throw APIError.invalid("body", "not valid JSON (\(error))")
        }
        guard case .object(let members) = value else { throw APIError.invalid("body", "expected a JSON object") }
        return members
    }

    static func body(_ request: Request) async throws -> [UInt8] {
        do {
            let buffer = try await request.body.collect(upTo: maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(.contentTooLarge, "invalid_request", "body larger than \(maxBodyBytes) bytes", field: "body")
        }
    }

    /// `application/x-www-form-urlencoded` parameters (RFC 6749 §3.2: each at most once).
    static func form(_ request: Request) async throws -> [String: String] {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/x-www-form-urlencoded") else {
            throw APIError(.badRequest, "invalid_request", "send the parameters as application/x-www-form-urlencoded")
        }
        let bytes = try await body(request)
        guard let parameters = FormEncoding.decode(String(decoding: bytes, as: UTF8.self)) else {
            throw APIError(.badRequest, "invalid_request", "malformed form body, or a parameter given more than once")
        }
        return parameters
    }
}

/// `application/x-www-form-urlencoded` decoding. Hand-written because Hummingbird's form decoder
/// maps into `Decodable` types and tolerates repeated parameters, which RFC 6749 §3.2 forbids.
enum FormEncoding {
    /// nil for malformed percent-escapes or a repeated name.
    static func decode(_ text: String) -> [String: String]? {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = unescape(parts[0]), !name.isEmpty else { return nil }
            guard let value = unescape(parts.count > 1 ? parts[1] : "") else { return nil }
            guard result[name] == nil else { return nil }
            result[name] = value
        }
        return result
    }

    static func unescape(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let high = utf8.next().flatMap(hexValue), let low = utf8.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// Typed access to a JSON request object, with 400s that name the field.
struct JSONFields {
    let members: [String: JSONValue]
    private(set) var used: Set<String> = []

    init(_ members: [String: JSONValue]) {
        self.members = members
    }

    mutating func string(_ name: String) throws -> String? {
        used.insert(name)
        guard let value = members[name], !value.isNull else { return nil }
        guard let text = value.stringValue else { throw APIError.invalid(name, "expected a string") }
        return text
    }

    mutating func requiredString(_ name: String) throws -> String {
        guard let text = try string(name) else { throw APIError.invalid(name, "required") }
        guard !text.isEmpty else { throw APIError.invalid(name, "must not be empty") }
        return text
    }

    mutating func int(_ name: String) throws -> Int64? {
        used.insert(name)
        guard let value = members[name], !value.isNull else { return nil }
        guard let number = value.int64Value else { throw APIError.invalid(name, "expected an integer") }
        return number
    }

    mutating func raw(_ name: String) -> JSONValue? {
        used.insert(name)
        guard let value = members[name], !value.isNull else { return nil }
        return value
    }

    /// Unknown members are errors, so a typo is not silently ignored.
    func finish() throws {
        if let unknown = members.keys.sorted().first(where: { !used.contains($0) }) {
            throw APIError.invalid(unknown, "unknown field (known: \(used.sorted().joined(separator: ", ")))")
        }
    }
}
