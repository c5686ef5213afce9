import Crypto
import PortcullisCluster

/// The MAC of the records the control plane keeps in Redis for sign-in and its authorization
/// server — authorization codes, refresh tokens and their families, signed-in sessions (the
/// operator console's too) and remembered consent — under a key of its own, derived from the
/// cluster secret. Each record's MAC binds its Redis key, so that a record copied under another
/// key (a console session under an id the copier chose) does not verify, and the fields the
/// control plane acts on; a record whose MAC does not verify is treated as absent. So a party
/// that can write to Redis but has no cluster secret cannot have tokens issued for a user or
/// scope nobody granted, nor hold a console session (docs/security.md, "What a Redis writer can
/// and cannot do").
enum RecordMAC {
    static func derive(secret: [UInt8], cluster: String) -> ClusterMAC {
        let derived = HMAC<SHA256>.authenticationCode(for: Array("portcullis control-plane record key".utf8), using: SymmetricKey(data: secret))
        return ClusterMAC(secret: Array(derived), cluster: cluster)
    }
}
