import PortcullisConfig

/// The top-level keys of a configuration file that take effect only when the process starts
/// (listeners, the Redis link, the node id, thread counts…), as written in one version of the
/// file. A SIGHUP reload compares them with the running file's and refuses the whole reload
/// when any differs (``StartOnlyChanges``): applying the rest while silently ignoring them would
/// leave the node running a configuration that is in no file.
public struct StartOnlySettings: Sendable {
    /// A key whose value, or only whose presence, is read at start.
    public enum Key: Sendable {
        /// The whole value (compared as written: the same value spelled differently counts as a change).
        case value(String)
        /// Only whether the key is there (e.g. `tls`: whether the listener speaks TLS; the files it
        /// names are reloadable).
        case presence(String)
    }

    private struct Written: Sendable, Equatable {
        var text: String?
        var line: Int?
        var column: Int?
    }

    private let file: String
    private let written: [(key: String, value: Written)]

    /// Reads `keys` from the top-level mapping `root` (a root that is no mapping reads as empty).
    public init(root: ConfigNode, keys: [Key]) {
        file = root.file
        var entries: [String: ConfigNode] = [:]
        if var mapping = try? root.mapping() {
            for (key, value) in mapping.all() where entries[key] == nil { entries[key] = value }
        }
        written = keys.map { key in
            switch key {
            case .value(let name):
                let node = entries[name].flatMap { $0.isNull ? nil : $0 }
                return (name, Written(text: node.map(Self.canonical), line: node?.line, column: node?.column))
            case .presence(let name):
                let node = entries[name].flatMap { $0.isNull ? nil : $0 }
                return (name, Written(text: node == nil ? nil : "present", line: node?.line, column: node?.column))
            }
        }
    }

    /// The keys that differ in `newer`, each as an error located in `newer`'s file.
    public func changes(to newer: StartOnlySettings) -> StartOnlyChanges? {
        var changed: [ConfigError] = []
        for ((key, old), (_, new)) in zip(written, newer.written) where old.text != new.text {
            let what = new.text == nil ? "removed" : old.text == nil ? "added" : "changed"
            changed.append(ConfigError(file: newer.file, line: new.line, column: new.column, keyPath: key,
                                       message: "\(what), but it applies only at start: restart the node to apply it"))
        }
        return changed.isEmpty ? nil : StartOnlyChanges(changes: changed)
    }

    /// The value as text, independent of layout (mappings by key, sequences in order).
    private static func canonical(_ node: ConfigNode) -> String {
        if node.isNull { return "~" }
        if node.isScalar { return "'" + ((try? node.string()) ?? "") + "'" }
        if var mapping = try? node.mapping() {
            return "{" + mapping.all().sorted { $0.key < $1.key }.map { "\($0.key): \(canonical($0.value))" }.joined(separator: ", ") + "}"
        }
        return "[" + ((try? node.sequence()) ?? []).map(canonical).joined(separator: ", ") + "]"
    }
}

/// A reload refused because settings that apply only at start changed; nothing was applied.
public struct StartOnlyChanges: Error, CustomStringConvertible, Sendable {
    /// One per changed key, located in the new file.
    public let changes: [ConfigError]

    public var description: String { changes.map(\.description).joined(separator: "; ") }
}
