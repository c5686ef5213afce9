import NIOCore
import NIOHTTP1
import PortcullisJOSE

/// A response the gateway writes itself: RFC 6750 challenges, 404/405/413/429/502/504, and the
/// 204 answering a CORS preflight. JSON `{"error", "error_description", "request_id"}` (none for
/// a 204, which has no body); never echoes a token.
struct ErrorResponse {
    var status: HTTPResponseStatus
    var error: String
    var description: String
    var headers: HTTPHeaders = HTTPHeaders()
    /// The gateway ends the connection after this answer: `Connection: close` over HTTP/1.1,
    /// GOAWAY over HTTP/2 (its open streams may finish).
    var closesConnection = false

    /// The RFC 6750 response for a failed authentication.
    init(_ failure: AuthFailure, realm: String) {
        status = failure.status
        error = failure.errorCode ?? "unauthorized"
        description = failure.description
        if failure.status == .unauthorized || failure.status == .forbidden || failure.status == .badRequest {
            var challenge = "Bearer realm=\"\(Self.quoted(realm))\""
            if let code = failure.errorCode {
                challenge += ", error=\"\(code)\", error_description=\"\(Self.quoted(failure.description))\""
            }
            if let scope = failure.scope {
                challenge += ", scope=\"\(Self.quoted(scope))\""
            }
            headers.add(name: "WWW-Authenticate", value: challenge)
        }
    }

    init(status: HTTPResponseStatus, error: String, description: String) {
        self.status = status
        self.error = error
        self.description = description
    }

    /// Whether the response has a body: a 204 has none (nor `Content-Length`, nor `Content-Type`).
    var hasBody: Bool { status != .noContent }

    /// This response with `fields` added (a route's CORS fields), unchanged for nil.
    func adding(_ fields: HTTPHeaders?) -> ErrorResponse {
        guard let fields else { return self }
        var response = self
        response.headers.add(contentsOf: fields)
        return response
    }

    /// The answer to bytes the HTTP/1.1 decoder refused.
    static let malformedRequest = ErrorResponse(status: .badRequest, error: "invalid_request", description: "the request is not valid HTTP/1.1")

    func body(requestID: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let json = JSONWriter.serialize(.object([
            "error": .string(error),
            "error_description": .string(description),
            "request_id": .string(requestID),
        ]))
        return allocator.buffer(string: json)
    }

    /// RFC 6750 quoted-string content: printable ASCII without `"` and `\` (replaced), so a
    /// description can never break the header.
    static func quoted(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { scalar -> Unicode.Scalar in
            switch scalar.value {
            case 0x20...0x7E where scalar != "\"" && scalar != "\\": scalar
            default: "'"
            }
        }))
    }
}
