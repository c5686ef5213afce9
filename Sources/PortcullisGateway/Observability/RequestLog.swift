import NIOCore

/// What the access log and the metrics learn about one request.
struct RequestLog {
    let requestID: String
    let method: String
    /// The request target as received; only its path is logged.
    let target: String
    let start: NIODeadline
    var route: String?
    /// The request's `Host`.
    var host: String?
    /// The client's address (behind trusted proxies, the one their forwarding header names).
    var client: String?
    var status = 0
    var subject: String?
    /// The verified token's `client_id` (or `azp`).
    var clientID: String?
    /// Body bytes read from the client and written to it (framing excluded).
    var bytesIn = 0
    var bytesOut = 0
    var reason: String?
    /// The upstream targets tried, in order, comma-separated (as nginx's `$upstream_addr`): one,
    /// unless the request went a second time.
    private(set) var upstream: String?
    /// The request's spans, nil when tracing is off or the request is not traced.
    var trace: RequestTrace?

    init(requestID: String, method: String, target: String, start: NIODeadline) {
        self.requestID = requestID
        self.method = method
        self.target = target
        self.start = start
    }

    /// The request goes to `target` (a first try, or another).
    mutating func tries(_ target: String) {
        upstream = upstream.map { $0 + "," + target } ?? target
    }

    /// The target of the last try.
    var lastUpstream: Substring? {
        upstream.map { $0.split(separator: ",").last ?? Substring($0) }
    }

    /// The query string is left out of the log: it may carry credentials. (Cut when a line is
    /// written, not per request: the access log is often off.)
    var path: String { String(target.prefix { $0 != "?" }) }
}
