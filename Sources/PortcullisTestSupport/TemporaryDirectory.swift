import Foundation

/// Temporary folders for fixtures, marked with the creating process's pid so that folders left by
/// a test run that was killed before it could clean up are removed by the next one.
public enum TemporaryDirectory {
    private static let ownerFile = "owner.pid"
    private static let sharedPrefix = "portcullis-"

    /// A new folder `<tmp>/<prefix>-XXXXXX`; `prefix` should start with `portcullis-`.
    public static func make(prefix: String) throws -> String {
        removeStale()
        var template = Array((FileManager.default.temporaryDirectory.path + "/\(prefix)-XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FixtureError("mkdtemp: \(errnoDescription())")
        }
        let directory = String(cString: created)
        try "\(getpid())".write(toFile: directory + "/" + ownerFile, atomically: true, encoding: .utf8)
        return directory
    }

    private static func removeStale() {
        let manager = FileManager.default
        let root = manager.temporaryDirectory.path
        guard let names = try? manager.contentsOfDirectory(atPath: root) else { return }
        for name in names where name.hasPrefix(sharedPrefix) {
            let directory = root + "/" + name
            if let owner = try? String(contentsOfFile: directory + "/" + ownerFile, encoding: .utf8),
               let pid = Int32(owner.trimmingCharacters(in: .whitespacesAndNewlines)) {
                if kill(pid, 0) != 0 && errno == ESRCH { try? manager.removeItem(atPath: directory) }
            } else if let modified = (try? manager.attributesOfItem(atPath: directory))?[.modificationDate] as? Date,
                      modified < Date().addingTimeInterval(-3600) {
                // Left by a fixture that wrote no owner file; an hour is far beyond any test.
                try? manager.removeItem(atPath: directory)
            }
        }
    }
}
