import NIOHTTP1

/// The client's address behind trusted proxies. A connection from a trusted proxy states the
/// address it received the request from in a forwarding header (`X-Forwarded-For`, or
/// `Forwarded: for=`), each hop appending to the right. The chain is walked from the right,
/// through trusted hops only: the first address that is not a trusted proxy is the client.
/// Everything to its left was written by the client (or by proxies nobody vouches for) and is
/// ignored. A connection from anyone else is its own client, whatever it sends.
final class TrustedProxies: Sendable {
    let networks: [CIDR]
    let header: ClientAddressConfig.Header

    init?(_ config: ClientAddressConfig) {
        guard !config.trustedProxies.isEmpty else { return nil }
        networks = config.trustedProxies
        header = config.header
    }

    func trusts(_ address: IPAddress) -> Bool {
        networks.contains { $0.contains(address) }
    }

    /// The client and the hops the gateway believes, from the left: `[client, proxy, …]`,
    /// excluding the TCP peer; empty when the peer is not trusted.
    struct Resolution: Equatable {
        /// The client's address.
        var client: String
        /// The addresses of the chain from the client to the hop before the peer, as vouched for
        /// by trusted proxies (client first). Empty when the peer is the client.
        var chain: [String]
        /// Whether the TCP peer is a trusted proxy (its forwarding headers are then passed on).
        var peerTrusted: Bool
    }

    /// The resolution for a request from `peer` with `headers`.
    func resolve(peer: String, headers: HTTPHeaders) -> Resolution {
        guard let peerAddress = IPAddress(peer), trusts(peerAddress) else { return Resolution(client: peer, chain: [], peerTrusted: false) }
        let hops = Self.hops(headers, header: header)
        return Self.walk(peer: peer, hops: hops, trusts: trusts)
    }

    /// The right-to-left walk over `hops` (left to right as they appear; nil for an entry that
    /// is not an address), behind a trusted `peer`. An entry that is not an address stops the
    /// walk at the trusted hop that wrote it: that hop is then the client.
    static func walk(peer: String, hops: [IPAddress?], trusts: (IPAddress) -> Bool) -> Resolution {
        var chain: [String] = []
        var client = peer
        for hop in hops.reversed() {
            guard let hop else { break }
            let text = hop.description
            chain.append(text)
            client = text
            if !trusts(hop) { break }
        }
        return Resolution(client: client, chain: chain.reversed(), peerTrusted: true)
    }

    /// The addresses a forwarding header lists, left to right, over all its fields.
    static func hops(_ headers: HTTPHeaders, header: ClientAddressConfig.Header) -> [IPAddress?] {
        var hops: [IPAddress?] = []
        switch header {
        case .xForwardedFor:
            for value in headers["x-forwarded-for"] {
                for entry in value.split(separator: ",", omittingEmptySubsequences: false) {
                    hops.append(IPAddress(forwardedNode: Substring(String(entry).trimmingASCIISpaces())))
                }
            }
        case .forwarded:
            for value in headers["forwarded"] {
                for element in value.split(separator: ",", omittingEmptySubsequences: false) {
                    hops.append(forNode(of: element))
                }
            }
        }
        return hops
    }

    /// The address in an RFC 7239 element's `for=` parameter, nil without one or when it is not
    /// an address.
    static func forNode(of element: Substring) -> IPAddress? {
        for pair in element.split(separator: ";") {
            let trimmed = String(pair).trimmingASCIISpaces()
            guard trimmed.count > 4, trimmed.prefix(4).lowercased() == "for=" else { continue }
            return IPAddress(forwardedNode: Substring(trimmed.dropFirst(4)))
        }
        return nil
    }
}
