import NIOHTTP1
import PortcullisCluster
import PortcullisJOSE

/// The string a rate-limit policy counts by. When the token lacks the claim (or the route is
/// unauthenticated) the client IP stands in, so requests are never left unlimited.
enum RateLimitKey {
    static func value(for key: RateLimitPolicy.Key, route: String, identity: VerifiedToken?, headers: HTTPHeaders, clientAddress: String?) -> String {
        let ip = "ip:" + (clientAddress ?? "unknown")
        switch key {
        case .subject: return identity?.subject.map { "sub:" + $0 } ?? ip
        case .clientID: return identity?.clientID.map { "client:" + $0 } ?? ip
        case .ip: return ip
        case .header(let name): return headers.first(name: name).map { "hdr:" + $0 } ?? ip
        case .route: return "route:" + route
        }
    }
}
