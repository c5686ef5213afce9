import PortcullisConfig

/// What the node does when it runs short of memory (`overload:`; docs/configuration.md,
/// "Overload"). Read at start only.
public struct OverloadConfig: Sendable, Equatable {
    /// How much resident memory the node may have before it sheds load.
    public enum MemoryLimit: Sendable, Equatable {
        /// Never shed for memory.
        case off
        /// This many bytes.
        case bytes(Int)
        /// This share (0 < share ≤ 1) of the memory the process may use: its cgroup's
        /// `memory.max` where one is set, else the machine's memory.
        case share(Double)
    }

    /// Default 75 % of the memory the process may use.
    public var memoryLimit = MemoryLimit.share(0.75)
    /// Over the limit, `limits.response_write_timeout` becomes this (when it is shorter). Default 2 s.
    public var responseWriteTimeout: Duration = .seconds(2)

    public init() {}

    init(node: ConfigNode) throws {
        var map = try node.mapping()
        if let v = map.optional("memory_limit") { memoryLimit = try Self.memoryLimit(v) }
        if let v = map.optional("response_write_timeout") {
            responseWriteTimeout = try v.duration()
            guard responseWriteTimeout > .zero else { throw v.error("must be more than 0s") }
        }
        try map.finish()
    }

    private static func memoryLimit(_ node: ConfigNode) throws -> MemoryLimit {
        let text = try node.string().trimmingCharacters(in: .whitespaces)
        if text == "off" { return .off }
        if text.hasSuffix("%") {
            guard let percent = Double(text.dropLast().trimmingCharacters(in: .whitespaces)), percent > 0, percent <= 100 else {
                throw node.error("expected a share such as 75% (more than 0, at most 100), got '\(text)'")
            }
            return .share(percent / 100)
        }
        guard let bytes = ConfigNode.parseByteCount(text) else {
            throw node.error("expected off, a share such as 75%, or a size such as 2GiB, got '\(text)'")
        }
        guard bytes >= 1 << 20 else { throw node.error("must be at least 1MiB, got '\(text)'") }
        return .bytes(bytes)
    }

    /// The limit in bytes for a process that may use `available` bytes (nil: unknown, and then a
    /// share cannot be resolved). Nil means no limit.
    public func limitBytes(available: Int?) -> Int? {
        switch memoryLimit {
        case .off: nil
        case .bytes(let bytes): bytes
        case .share(let share): available.map { Int(Double($0) * share) }
        }
    }
}
