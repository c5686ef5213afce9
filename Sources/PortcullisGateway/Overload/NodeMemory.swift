import CProcessMemory
import Foundation

/// The memory figures the overload guard works from: the process's resident set, and how much
/// the process may use at most.
enum NodeMemory {
    /// The resident set in bytes — what the out-of-memory killer and a cgroup's limit count. One
    /// read of `/proc/self/statm`; no lock of the allocator's is taken. (glibc's `mallinfo2` would
    /// give the heap in use, but walks every free chunk under its arena's lock — milliseconds per
    /// tens of thousands of free chunks (benchmarks.md, "Memory overload") — during which any
    /// event loop allocating in that arena waits.)
    static func resident() -> Int {
        Int(portcullis_resident_bytes())
    }

    /// Gives the pages the allocator holds free back to the system (`malloc_trim`), so that the
    /// resident set falls once what held them is freed: glibc keeps freed memory that is not at
    /// the top of a heap. Takes each arena's lock while it walks its free chunks; the guard calls
    /// it only while the node is overloaded, at most once a second.
    static func trim() {
        portcullis_trim_heap()
    }

    /// The most the process may use: its cgroup's memory limit where one is set (v2
    /// `memory.max`, v1 `memory.limit_in_bytes`), else the machine's memory; the
    /// smaller of those known. Nil when none can be read.
    static func available() -> Int? {
        [cgroupLimit(), machineMemory()].compactMap { $0 }.min()
    }

    /// The smallest memory limit of the process's cgroup and the cgroups above it (a limit set on
    /// a parent, such as a systemd slice, binds too): v2 `memory.max`, or v1's
    /// `memory.limit_in_bytes` in the memory controller's hierarchy, along the path.
    private static func cgroupLimit() -> Int? {
        var paths: [String] = []
        let membership = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        // "0::/path" (v2), "N:memory:/path" (v1's memory controller).
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let (root, file): (String, String)
            if fields[0] == "0", fields[1].isEmpty {
                (root, file) = ("/sys/fs/cgroup", "memory.max")
            } else if fields[1].split(separator: ",").contains("memory") {
                (root, file) = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            } else {
                continue
            }
            var path = String(fields[2])
            while true {
                paths.append(root + (path == "/" ? "" : path) + "/" + file)
                guard path != "/", let slash = path.lastIndex(of: "/") else { break }
                path = slash == path.startIndex ? "/" : String(path[..<slash])
            }
        }
        let limits = paths.compactMap { path -> Int? in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            // "max" (v2) or a page-rounded Int64.max (v1): no limit there.
            guard let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes < 1 << 60 else { return nil }
            return bytes
        }
        return limits.min()
    }

    /// The machine's memory from `sysconf` (the `sysinfo` system call), not `/proc/meminfo`:
    /// the systemd units' `ProcSubset=pid` hides that file, and the guard would be off.
    private static func machineMemory() -> Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return nil }
        return pages * pageSize
    }
}
