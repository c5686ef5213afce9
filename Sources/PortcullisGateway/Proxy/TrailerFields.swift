/// What may pass in a trailer section. RFC 9110 §6.5.1: fields a recipient must act on before the
/// content — framing, routing, authentication, request modifiers, response control, content
/// format — cannot be processed after it, and a client that merged them from trailers would act
/// on what the upstream sent too late to be checked (a `content-length` that contradicts the
/// body, a `set-cookie` the head did not carry). The gateway drops them from an upstream's
/// trailers rather than pass them on.
enum TrailerFields {
    static let prohibited = HeaderNameSet([
        // Framing and routing.
        "content-length", "transfer-encoding", "host", "trailer", "te",
        // Authentication and cookies.
        "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "cookie", "set-cookie",
        // Request modifiers.
        "expect", "max-forwards", "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
        // Response control.
        "age", "cache-control", "expires", "date", "location", "retry-after", "vary", "warning", "pragma",
        // Content format.
        "content-type", "content-encoding", "content-range", "content-language", "content-location",
    ])
}
