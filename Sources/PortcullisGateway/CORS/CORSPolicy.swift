import NIOHTTP1

/// A route's CORS rules, ready for the request path: the answer to a preflight and the fields an
/// actual response carries. Pure: it reads request fields and returns response fields.
///
/// Every response on a CORS route carries `Vary: Origin` (the fields depend on the request's
/// `Origin`, so a shared cache must not hand one origin's answer to another), whether or not the
/// origin is allowed. A refused origin gets no `Access-Control-*` field at all: the browser then
/// withholds the response from the calling page.
final class CORSPolicy: Sendable {
    let config: CORSConfig
    private let allowMethods: String
    private let exposeHeaders: String?

    init(_ config: CORSConfig) {
        self.config = config
        allowMethods = config.methods.joined(separator: ", ")
        exposeHeaders = config.exposedHeaders.isEmpty ? nil : config.exposedHeaders.joined(separator: ", ")
    }

    /// A preflight's question: a request's `Access-Control-Request-Method` and
    /// `Access-Control-Request-Headers`, from an `OPTIONS` request that has an `Origin`.
    struct Preflight: Equatable {
        let origin: String
        let method: String
        /// The requested header names, lower-cased, in order.
        let headers: [String]

        /// The question `headers` ask, nil unless they have exactly one `Origin` and an
        /// `Access-Control-Request-Method` (an `OPTIONS` without them is an ordinary request).
        init?(_ headers: HTTPHeaders) {
            let origins = headers["origin"], methods = headers["access-control-request-method"]
            guard origins.count == 1, let method = methods.first, methods.count == 1 else { return nil }
            origin = origins[0]
            self.method = method.trimmingASCIISpaces()
            var names: [String] = []
            for value in headers["access-control-request-headers"] {
                for part in value.split(separator: ",") {
                    let name = String(part).trimmingASCIISpaces().lowercased()
                    if !name.isEmpty { names.append(name) }
                }
            }
            self.headers = names
        }
    }

    /// Why a preflight was refused.
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case origin, method, header(String)

        var description: String {
            switch self {
            case .origin: "the Origin is not allowed on this route"
            case .method: "the requested method is not allowed for cross-origin requests on this route"
            case .header: "a requested header is not allowed for cross-origin requests on this route"
            }
        }
    }

    /// The fields of the 204 answering `preflight`, or why it is refused.
    func answer(_ preflight: Preflight) -> Result<[(name: String, value: String)], Refusal> {
        guard let allowOrigin = allowedOriginValue(preflight.origin) else { return .failure(.origin) }
        guard config.methods.contains(preflight.method) else { return .failure(.method) }
        for name in preflight.headers where !allows(header: name) { return .failure(.header(name)) }
        var fields: [(name: String, value: String)] = [("Access-Control-Allow-Origin", allowOrigin)]
        if config.credentials { fields.append(("Access-Control-Allow-Credentials", "true")) }
        fields.append(("Access-Control-Allow-Methods", allowMethods))
        if !preflight.headers.isEmpty { fields.append(("Access-Control-Allow-Headers", preflight.headers.joined(separator: ", "))) }
        if let maxAge = config.maxAgeSeconds { fields.append(("Access-Control-Max-Age", String(maxAge))) }
        fields.append(("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
        return .success(fields)
    }

    /// The fields for an actual (non-preflight) response to a request with `headers`.
    func responseFields(_ headers: HTTPHeaders) -> HTTPHeaders {
        var fields = HTTPHeaders([("Vary", "Origin")])
        let origins = headers["origin"]
        guard origins.count == 1, let allowOrigin = allowedOriginValue(origins[0]) else { return fields }
        fields.add(name: "Access-Control-Allow-Origin", value: allowOrigin)
        if config.credentials { fields.add(name: "Access-Control-Allow-Credentials", value: "true") }
        if let exposeHeaders { fields.add(name: "Access-Control-Expose-Headers", value: exposeHeaders) }
        return fields
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, nil when it is not allowed. The
    /// request's value is echoed (in lower case, as browsers serialize it) only when it equals a
    /// configured origin; nothing else a client sends is ever reflected.
    func allowedOriginValue(_ origin: String) -> String? {
        switch config.origins {
        case .any: return "*"
        case .exact(let allowed):
            let lowered = origin.lowercased()
            return allowed.contains(lowered) ? lowered : nil
        }
    }

    private func allows(header name: String) -> Bool {
        if config.headers.contains(name) { return true }
        // Fetch: a `*` in Access-Control-Allow-Headers never covers Authorization.
        return config.headers.contains("*") && name != "authorization" && HeaderName.isValid(name)
    }
}
