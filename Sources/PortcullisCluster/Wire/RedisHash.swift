import PortcullisRedis

extension Array where Element == RedisValue {
    /// The reply of HGETALL (`field value field value …`) as a dictionary of strings.
    public func hashFields() -> [String: String] {
        var result: [String: String] = [:]
        var index = 0
        while index + 1 < count {
            if let field = self[index].string, let value = self[index + 1].string { result[field] = value }
            index += 2
        }
        return result
    }
}
