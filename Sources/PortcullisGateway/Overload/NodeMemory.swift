import CMallocStats
import Foundation

/// The memory figures the overload guard works from: what the C allocator has in use, and how
/// much the process may use at most.
enum NodeMemory {
    /// Bytes the C allocator (glibc's, which Swift and NIO allocate through) has handed out and
    /// not had back, summed over its arenas, mmapped chunks included. The resident set would also
    /// count pages the allocator keeps after they are freed, so a node that had shed its load
    /// would stay over its limit. Walks the allocator's free lists under each arena's lock, so it
    /// is read a few times a second, off the event loops.
    static func heapInUse() -> Int {
        Int(portcullis_heap_in_use())
    }

    /// The most the process may use: its cgroup's memory limit where one is set (v2
    /// `memory.max`, v1 `memory.limit_in_bytes`), else the machine's memory (`MemTotal`); the
    /// smaller of those known. Nil when none can be read.
    static func available() -> Int? {
        [cgroupLimit(), machineMemory()].compactMap { $0 }.min()
    }

    private static func cgroupLimit() -> Int? {
        var candidates: [String] = []
        if let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) {
            for line in membership.split(separator: "\n") where line.hasPrefix("0::") {
                candidates.append("/sys/fs/cgroup" + line.dropFirst(3) + "/memory.max")
            }
        }
        candidates += ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        for path in candidates {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            // "max" (v2) or a page-rounded Int64.max (v1): no limit.
            guard value != "max", let bytes = Int(value), bytes < 1 << 60 else { return nil }
            return bytes
        }
        return nil
    }

    private static func machineMemory() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2, let kibibytes = Int(fields[1]) else { return nil }
            return kibibytes * 1024
        }
        return nil
    }
}
