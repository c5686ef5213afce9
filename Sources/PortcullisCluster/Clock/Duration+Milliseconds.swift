extension Duration {
    /// Whole milliseconds (truncated), for Redis `PX`/`PEXPIRE` arguments and JSON.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds (truncated), never negative.
    public var wholeNanoseconds: UInt64 {
        UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds / 1_000_000_000))
    }

    /// Seconds as a `Double`, for metrics and JSON.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
