import Crypto
import Foundation
import PortcullisJOSE
import PortcullisRedis

/// An issuer's key set as the control plane stores it in Redis (HASH `keys:set:<issuer>`).
/// The MAC under the cluster secret is what stops a Redis writer from injecting a signing key;
/// the signed issuer must equal the slot it is read from, and the signed `serial` only grows per
/// issuer, so a valid record can neither be moved to another issuer nor rolled back.
public struct KeySetRecord: Sendable, Equatable {
    /// The issuer's `iss`.
    public var issuer: String
    /// The JWKS document, as fetched.
    public var jwks: String
    /// Hex SHA-256 of `jwks` (first 16 digits): changes exactly when the set changes.
    public var version: String
    /// Grows with every publication for the issuer (nodes refuse a lower one).
    public var serial: Int64
    public var fetchedAtMillis: Int64
    public var mac: String

    public init(issuer: String, jwks: String, serial: Int64, fetchedAtMillis: Int64, mac: ClusterMAC) {
        self.issuer = issuer
        self.jwks = jwks
        self.version = Self.version(of: jwks)
        self.serial = serial
        self.fetchedAtMillis = fetchedAtMillis
        self.mac = ""
        self.mac = mac.sign(macFields)
    }

    static func version(of jwks: String) -> String {
        SHA256.hash(data: Array(jwks.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    var macFields: [String] { ["ks2", issuer, version, jwks, String(serial), String(fetchedAtMillis)] }

    /// The record's fields and values, as `HSET` takes them (`init?(hash:)` reads them back).
    var fields: [RedisArgument] {
        ["issuer", RedisArgument(issuer), "jwks", RedisArgument(jwks), "version", RedisArgument(version), "serial", RedisArgument(serial),
         "fetched_ms", RedisArgument(fetchedAtMillis), "mac", RedisArgument(mac)]
    }

    init?(hash: [RedisValue]) {
        let map = hash.hashFields()
        guard let issuer = map["issuer"], let jwks = map["jwks"], let version = map["version"],
              let serial = map["serial"].flatMap({ Int64($0) }), let fetched = map["fetched_ms"].flatMap({ Int64($0) }),
              let mac = map["mac"] else { return nil }
        self.issuer = issuer
        self.jwks = jwks
        self.version = version
        self.serial = serial
        self.fetchedAtMillis = fetched
        self.mac = mac
    }

    /// Why a stored record was not accepted.
    enum RecordError: Error, CustomStringConvertible {
        case malformed
        case badMAC
        case wrongSlot(signedIssuer: String)

        var description: String {
            switch self {
            case .malformed: "malformed key-set record"
            case .badMAC: "key-set record MAC does not verify: not written by a holder of the cluster secret"
            case .wrongSlot(let signed): "key-set record signed for issuer '\(signed)' found in another issuer's slot"
            }
        }
    }

    /// Reads and authenticates the record stored for `issuer`.
    static func read(hash: [RedisValue], issuer: String, mac: ClusterMAC) throws(RecordError) -> KeySetRecord {
        guard let record = KeySetRecord(hash: hash) else { throw .malformed }
        guard record.version == Self.version(of: record.jwks), mac.verify(record.mac, record.macFields) else { throw .badMAC }
        guard record.issuer == issuer else { throw .wrongSlot(signedIssuer: record.issuer) }
        return record
    }
}
