import NIOCore
import NIOHTTP1

/// A response the gateway composes itself (a refusal, an upstream failure), as the parts an
/// HTTP/2 stream writes. To a gRPC call, a status of 400 or above is answered in gRPC's shape
/// (`GRPCStatus`: 200, `application/grpc`, no messages, the status and message in trailers);
/// anything else gets the JSON body with its length, none for a response without a body (a CORS
/// preflight's 204) and none sent to a HEAD. Both carry `x-request-id` and `cache-control: no-store`.
struct HTTP2GatewayAnswer {
    var head: HTTPResponseHead
    /// The body to write; nil for none.
    var body: ByteBuffer?
    var trailers: HTTPHeaders?
    /// The body bytes the access log counts (those written).
    var bodyBytes: Int { body?.readableBytes ?? 0 }

    init(_ response: ErrorResponse, requestID: String, isGRPC: Bool, isHEAD: Bool, allocator: ByteBufferAllocator) {
        var headers = response.headers
        headers.add(name: "x-request-id", value: requestID)
        headers.add(name: "cache-control", value: "no-store")
        if isGRPC, response.status.code >= 400 {
            headers.add(name: "content-type", value: "application/grpc")
            head = HTTPResponseHead(version: .http2, status: .ok, headers: headers)
            body = nil
            trailers = [
                "grpc-status": String(GRPCStatus.code(for: response.status)),
                "grpc-message": GRPCStatus.encodedMessage("\(response.error): \(response.description)"),
            ]
            return
        }
        let json = response.hasBody ? response.body(requestID: requestID, allocator: allocator) : nil
        if let json {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(json.readableBytes))
        }
        head = HTTPResponseHead(version: .http2, status: response.status, headers: headers)
        body = isHEAD ? nil : json
        trailers = nil
    }
}
