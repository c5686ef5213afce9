/// The rule for a node's id (`node_id`, `--node-id`): it names the node in its record, in every
/// acknowledgement (`NodeAck`, whose wire text separates fields by spaces), in Redis keys and in
/// metric labels. A configured id with a space would pass `--check`, and every acknowledgement
/// the node wrote would then be malformed: it would never count as applied, and `?wait` would
/// wait for ever.
public enum NodeID {
    public static let maxBytes = 128

    /// Why `id` cannot be a node id, or nil when it can: 1 to 128 bytes of printable ASCII
    /// without spaces.
    public static func problem(_ id: String) -> String? {
        guard !id.isEmpty, id.utf8.count <= maxBytes else { return "must be 1 to \(maxBytes) bytes long" }
        guard id.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return "may hold only printable ASCII without spaces (it is a field of every acknowledgement), got '\(id)'"
        }
        return nil
    }
}
