import Hummingbird
import PortcullisJOSE

/// Reading request input strictly: malformed input is a 400 that says what is wrong, never a
/// silent default.
enum RequestInput {
    static let maxBodyBytes = 64 * 1024

    /// The body as a JSON object; an empty body is an empty object.
    static func jsonObject(_ request: Request, maxBytes: Int = maxBodyBytes) async throws -> [String: JSONValue] {
        let bytes = try await body(request, maxBytes: maxBytes)
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

    static func body(_ request: Request, maxBytes: Int = maxBodyBytes) async throws -> [UInt8] {
        do {
            let buffer = try await request.body.collect(upTo: maxBytes)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(.contentTooLarge, "invalid_request", "body larger than \(maxBytes) bytes", field: "body")
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
