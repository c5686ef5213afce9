/// The outcome of matching a request against the route table.
enum RouteMatch {
    case matched(CompiledRoute)
    /// A route matches the host and path but not the method.
    case methodNotAllowed(allowed: [String])
    case notFound
}

/// Host, then longest path prefix on a segment boundary (or before a format suffix on its last
/// segment), then method. Routes naming a host win over host-less ones; among equal prefixes the
/// first in the file wins. Prefixes match in any ASCII letter case unless `caseSensitive` (see
/// `PathPolicy.caseSensitive`).
struct Router: Sendable {
    private let byHost: [String: [CompiledRoute]]
    private let anyHost: [CompiledRoute]
    private let caseSensitive: Bool

    init(routes: [CompiledRoute], caseSensitive: Bool = false) {
        self.caseSensitive = caseSensitive
        var byHost: [String: [CompiledRoute]] = [:]
        var anyHost: [CompiledRoute] = []
        for route in routes {
            if let host = route.config.host {
                byHost[host, default: []].append(route)
            } else {
                anyHost.append(route)
            }
        }
        // Longest prefix first; the sort is stable so file order breaks ties.
        func order(_ list: [CompiledRoute]) -> [CompiledRoute] {
            list.enumerated().sorted { lhs, rhs in
                let l = lhs.element.config.pathPrefix.utf8.count, r = rhs.element.config.pathPrefix.utf8.count
                return l != r ? l > r : lhs.offset < rhs.offset
            }.map(\.element)
        }
        self.byHost = byHost.mapValues(order)
        self.anyHost = order(anyHost)
    }

    /// `host` is the request's Host without port, lower-cased (only evaluated when some route names
    /// a host); `path` excludes the query.
    func match(host: @autoclosure () -> String?, path: Substring, method: String) -> RouteMatch {
        var allowed: [String] = []
        if !byHost.isEmpty, let host = host(), let routes = byHost[host] {
            if let route = match(routes, path: path, method: method, allowed: &allowed) { return .matched(route) }
            // A more specific host's routes shadow the host-less ones only when one matched the path.
            if !allowed.isEmpty { return .methodNotAllowed(allowed: Array(Set(allowed)).sorted()) }
        }
        if let route = match(anyHost, path: path, method: method, allowed: &allowed) { return .matched(route) }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: Array(Set(allowed)).sorted())
    }

    /// The first route of `routes` matching path and method. Only the longest matching prefix
    /// counts: when routes with that prefix match the path but not the method, their methods go
    /// to `allowed` and the answer is 405 — never a shorter prefix's route, which would let a
    /// method the longer route does not list past its authentication (`DELETE /admin/x` served
    /// by a public `/` route).
    private func match(_ routes: [CompiledRoute], path: Substring, method: String, allowed: inout [String]) -> CompiledRoute? {
        var matchedPrefix: String?
        for route in routes where Self.prefixMatches(route, path, caseSensitive: caseSensitive) {
            if let matchedPrefix, route.config.pathPrefix.utf8.count < matchedPrefix.utf8.count { break }
            matchedPrefix = route.config.pathPrefix
            guard let methods = route.config.methods else { return route }
            if methods.contains(method) { return route }
            allowed.append(contentsOf: methods)
        }
        return nil
    }

    static func prefixMatches(_ route: CompiledRoute, _ path: Substring, caseSensitive: Bool) -> Bool {
        let prefix = route.config.pathPrefix
        if prefix == "/" { return true }
        let count = prefix.utf8.count
        if caseSensitive {
            guard path.utf8.starts(with: prefix.utf8) else { return false }
        } else {
            guard path.utf8.count >= count,
                  HeaderNameSet.equalsIgnoringASCIICase(path.utf8.prefix(count), route.lowercasedPathPrefix) else { return false }
        }
        let rest = path.utf8.dropFirst(count)
        guard let next = rest.first, next != UInt8(ascii: "/") else { return true }
        // A format suffix on the prefix's last segment (`/admin.json`, `/admin.json/`): Rails'
        // `(.:format)` and Spring MVC's suffix patterns serve it as `/admin`, so it must meet
        // `/admin`'s rules, not a shorter prefix's.
        guard next == UInt8(ascii: ".") else { return false }
        let suffix = rest.dropFirst()
        guard let slash = suffix.firstIndex(of: UInt8(ascii: "/")) else { return true }
        return suffix.index(after: slash) == suffix.endIndex
    }
}
