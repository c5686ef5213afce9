#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock seconds since 1970, without Foundation (token times are Unix seconds).
public enum UnixClock {
    /// The current wall-clock time in whole Unix seconds (`CLOCK_REALTIME`, fraction dropped).
    public static func seconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec)
    }
}
