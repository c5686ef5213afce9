#if os(Linux)
/// The start of Linux's `struct tcp_info` (`linux/tcp.h`, whose layout only ever grows at its
/// end), through `tcpi_bytes_acked`, padded beyond the whole structure: glibc's `tcp_info`
/// (netinet/tcp.h), which NIO's `getTCPInfo()` returns, stops before that field. NIO zeroes the
/// storage before `getsockopt` fills what the kernel has.
struct KernelTCPInfo: Sendable {
    /// tcpi_state … tcpi_total_retrans: 8 one-byte fields and 24 four-byte ones.
    private var head: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    /// tcpi_pacing_rate, tcpi_max_pacing_rate.
    private var pacing: (UInt64, UInt64)
    /// tcpi_bytes_acked (Linux 4.1).
    private(set) var bytesAcked: UInt64
    /// The rest of the kernel's structure and room for what later kernels add.
    private var rest: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                       UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
}
#endif
