import Foundation

/// Who a node is, for membership.
public struct NodeIdentity: Sendable {
    public var id: String
    /// Random per process start: an acknowledgement counts only for the process that signed it.
    public var instance: String
    public var role: String
    public var address: String
    public var adminAddress: String
    public var version: String
    public var startedAtMillis: Int64

    public init(id: String, role: String = "gateway", address: String, adminAddress: String, version: String,
                startedAtMillis: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        self.id = id
        var generator = SystemRandomNumberGenerator()
        self.instance = String(UInt64.random(in: .min ... .max, using: &generator), radix: 16)
        self.role = role
        self.address = address
        self.adminAddress = adminAddress
        self.version = version
        self.startedAtMillis = startedAtMillis
    }
}
