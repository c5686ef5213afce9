import NIOHTTP1

/// The shape of an answer the gateway gives a gRPC request itself (a refusal, an upstream
/// failure): gRPC clients read `grpc-status` and `grpc-message`, not an HTTP status or a JSON
/// body, so the answer is HTTP 200 with `content-type: application/grpc`, no messages, and the
/// status in the trailers (the gRPC over HTTP/2 protocol's "Trailers-Only"-equivalent).
enum GRPCStatus {
    /// Whether a request's `Content-Type` makes it a gRPC call (`application/grpc`,
    /// `application/grpc+proto`, `application/grpc-web` are not the same protocol and excluded).
    static func isGRPC(contentType: String?) -> Bool {
        guard let contentType else { return false }
        let lower = contentType.lowercased()
        return lower == "application/grpc" || lower.hasPrefix("application/grpc+") || lower.hasPrefix("application/grpc;")
    }

    /// The gRPC status code for an HTTP status the gateway would answer with (gRPC's own mapping
    /// of HTTP statuses, with the gateway's refusals made precise: 401 is UNAUTHENTICATED, 403
    /// PERMISSION_DENIED, 429 RESOURCE_EXHAUSTED).
    static func code(for status: HTTPResponseStatus) -> Int {
        switch status.code {
        case 400: 3      // INVALID_ARGUMENT
        case 401: 16     // UNAUTHENTICATED
        case 403: 7      // PERMISSION_DENIED
        case 404, 405: 12 // UNIMPLEMENTED
        case 408, 504: 4 // DEADLINE_EXCEEDED
        case 413, 429, 431: 8 // RESOURCE_EXHAUSTED
        case 502, 503: 14 // UNAVAILABLE
        default: 2       // UNKNOWN
        }
    }

    /// `grpc-message` encoding: bytes outside printable ASCII, and `%`, percent-encoded.
    static func encodedMessage(_ message: String) -> String {
        var out = ""
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
