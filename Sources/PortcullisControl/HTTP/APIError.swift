import Hummingbird
import PortcullisJOSE

/// An error answer of the admin API or the authorization server: `{"error": …, "error_description": …}`
/// (the RFC 6749 §5.2 shape, used for both so clients parse one format), plus `field` naming the
/// offending input when there is one.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// Machine-readable code: `invalid_request`, `unauthorized`, `not_found`, … or an OAuth code.
    public var code: String
    public var message: String
    /// The request field that is wrong, when one is.
    public var field: String?
    var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    /// 400 naming the field.
    static func invalid(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, "invalid_request", "\(field): \(message)", field: field)
    }

    static func notFound(_ message: String) -> APIError {
        APIError(.notFound, "not_found", message)
    }

    /// Redis did not confirm: never answer 2xx for a change that may not have happened.
    static func unavailable(_ error: any Error) -> APIError {
        APIError(.serviceUnavailable, "unavailable", "the cluster store (Redis) did not confirm the operation: \(error)")
    }

    var body: JSONValue {
        var object: [String: JSONValue] = ["error": .string(code), "error_description": .string(message)]
        if let field { object["field"] = .string(field) }
        return .object(object)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = Response.json(body, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }
}

extension Response {
    /// A JSON body (members sorted, so output is stable) that caches must not keep.
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let text = JSONWriter.serialize(value) + "\n"
        return Response(status: status,
                        headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func text(_ text: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
