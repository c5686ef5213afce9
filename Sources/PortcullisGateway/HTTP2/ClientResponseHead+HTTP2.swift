import NIOHTTP1

extension ClientResponseHead {
    /// The head's fields for an HTTP/2 response, in the order `HTTP1Writer` writes them:
    /// the forwarded fields, `Content-Length`, `X-Request-Id`, the gateway's. Names are
    /// lower-cased and connection-specific fields dropped by swift-nio-http2's codec.
    func http2Fields() -> HTTPHeaders {
        var headers = HTTPHeaders()
        if let forwarded {
            forwarded.withBytes { bytes in
                forwardedFields.forEach { index in
                    let field = forwarded.fields[index]
                    headers.add(name: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.name]), as: UTF8.self),
                                value: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self))
                }
            }
        }
        if let contentLength { headers.add(name: "content-length", value: String(contentLength)) }
        if let requestID { headers.add(name: "x-request-id", value: requestID) }
        for field in fields { headers.add(name: field.name, value: field.value) }
        return headers
    }
}
