import NIOHTTP1
import PortcullisCluster

/// The response fields that state a rate-limited route's quota (`http.rate_limit_headers`).
enum RateLimitFields {
    /// Every name either form writes, lower-case: an upstream's fields of these names are removed
    /// from its responses, so that only the gateway states the quota.
    static let names = ["ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]

    /// The fields for one decision under `policy`.
    static func fields(policy: RateLimitPolicy, decision: RateLimitDecision, form: RequestPolicy.RateLimitHeaders) -> HTTPHeaders {
        let window = Int(policy.window.components.seconds)
        var headers = HTTPHeaders()
        switch form {
        case .draft:
            // RFC 8941 structured fields: the policy's name as an sf-string, `q` the quota and
            // `w` the window in seconds; `r` what remains and `t` seconds until the window resets.
            let name = sfString(policy.name)
            headers.add(name: "RateLimit-Policy", value: "\(name);q=\(policy.limit);w=\(window)")
            headers.add(name: "RateLimit", value: "\(name);r=\(decision.remaining);t=\(decision.resetSeconds)")
        case .legacy:
            headers.add(name: "RateLimit-Policy", value: "\(policy.limit);w=\(window)")
            headers.add(name: "RateLimit-Limit", value: String(decision.limit))
            headers.add(name: "RateLimit-Remaining", value: String(decision.remaining))
            headers.add(name: "RateLimit-Reset", value: String(decision.resetSeconds))
        }
        return headers
    }

    /// An RFC 8941 sf-string: printable ASCII in quotes, `"` and `\` escaped; anything else (a
    /// policy name is the operator's, but could hold it) becomes `?`.
    static func sfString(_ text: String) -> String {
        var out = "\""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append("\\")
                out.append(Character(Unicode.Scalar(byte)))
            case 0x20...0x7E:
                out.append(Character(Unicode.Scalar(byte)))
            default:
                out.append("?")
            }
        }
        return out + "\""
    }
}
