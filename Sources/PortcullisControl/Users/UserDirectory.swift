import Foundation
import NIOPosix
import PortcullisConfig
import PortcullisJOSE

/// The users who may sign in at the authorization server's login page, read from the YAML file
/// `authorization_server.users_file` names:
///
/// ```yaml
/// users:
///   - username: alice
///     password_hash: $scrypt$ln=17,r=8,p=1$…$…
///     claims: {roles: [orders-reader], tenant: acme}
/// ```
///
/// Claims (strings or lists of strings) go into the user's access tokens. The file is read once,
/// at start-up and by `--check`.
struct UserDirectory: Sendable {
    struct User: Sendable, Equatable {
        var username: String
        var passwordHash: PasswordHash
        var claims: [String: JSONValue]
    }

    /// Claims a users file may not set: the authorization server sets them itself.
    static let reservedClaims: Set<String> = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "cnf", "auth_time", "acr", "amr", "sid"]

    let users: [String: User]
    /// An unknown username is checked against this hash (a salt no password was hashed with), so
    /// it costs the same KDF time as a wrong password and the answer's timing does not tell which
    /// usernames exist. Its scrypt parameters are those most users' hashes have (the costliest
    /// of equally common ones; the default without users): with the default always, a file
    /// whose cost was raised would tell every user of the new cost from an unknown name by the
    /// difference in KDF time. Users of a less common cost can still be told apart: `costs`.
    let decoy: PasswordHash
    /// How many different scrypt parameter sets the users' hashes have: more than one lets
    /// sign-in timing tell the users of the less common ones from unknown names (warned at
    /// start-up).
    let costs: Int

    init(users: [User]) {
        self.users = Dictionary(users.map { ($0.username, $0) }, uniquingKeysWith: { first, _ in first })
        var counts: [[Int]: Int] = [:]
        for user in self.users.values {
            counts[[user.passwordHash.logN, user.passwordHash.r, user.passwordHash.p], default: 0] += 1
        }
        costs = counts.count
        let common = counts.max { a, b in (a.value, (1 << a.key[0]) * a.key[1] * a.key[2]) < (b.value, (1 << b.key[0]) * b.key[1] * b.key[2]) }?.key
            ?? [PasswordHash.defaultLogN, PasswordHash.defaultR, PasswordHash.defaultP]
        var generator = SystemRandomNumberGenerator()
        decoy = PasswordHash(logN: common[0], r: common[1], p: common[2],
                             salt: (0..<PasswordHash.saltLength).map { _ in UInt8.random(in: 0...255, using: &generator) },
                             key: [UInt8](repeating: 0, count: PasswordHash.keyLength))
    }

    /// Reads and validates the users file; errors name the file, line and key.
    static func load(file: String) throws -> UserDirectory {
        var root = try ConfigNode.load(file: file).mapping()
        var users: [User] = []
        for item in try root.required("users").sequence() {
            var entry = try item.mapping()
            let nameNode = try entry.required("username")
            let username = try nameNode.nonEmptyString()
            guard username.unicodeScalars.allSatisfy({ !CharacterSet.whitespacesAndNewlines.contains($0) && !CharacterSet.controlCharacters.contains($0) }) else {
                throw nameNode.error("a username may not contain spaces or control characters")
            }
            guard !users.contains(where: { $0.username == username }) else { throw nameNode.error("duplicate username '\(username)'") }
            let hashNode = try entry.required("password_hash")
            let hash: PasswordHash
            do {
                hash = try PasswordHash(encoded: try hashNode.string())
            } catch let error as PasswordHash.FormatError {
                throw hashNode.error(error.description)
            }
            var claims: [String: JSONValue] = [:]
            if let claimsNode = entry.optional("claims") {
                var map = try claimsNode.mapping()
                for (name, value) in map.all() {
                    guard !reservedClaims.contains(name) else {
                        throw value.error("claim '\(name)' is set by the authorization server; choose another name")
                    }
                    claims[name] = value.isScalar ? .string(try value.string()) : .array(try value.stringList().map(JSONValue.string))
                }
            }
            try entry.finish()
            users.append(User(username: username, passwordHash: hash, claims: claims))
        }
        try root.finish()
        return UserDirectory(users: users)
    }

    /// The user, when `password` is theirs. The KDF runs on NIO's blocking thread pool (one per
    /// core), never on an event loop; the pool also bounds how many run at once, and so the
    /// memory they take.
    func authenticate(username: String, password: String) async -> User? {
        let user = users[username]
        let hash = user?.passwordHash ?? decoy
        let matches = (try? await NIOThreadPool.singleton.runIfActive { hash.matches(password) }) ?? false
        guard let user, matches else { return nil }
        return user
    }
}
