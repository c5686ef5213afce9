import Foundation
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// The ACL file `cluster/redis/make-acl.sh` makes from `cluster/redis/users.acl`, as an operator
/// would, plus one test-only superuser (appended here, not part of the shipped file) to set
/// things up and read `ACL LOG`.
enum ACLFile {
    static let gatewayPassword = "gateway-pw-5c1e7a"
    static let controlPassword = "control-pw-92b4df"
    static let rootUser = "acl-test-root"
    static let rootPassword = "root-pw-0d83aa"

    static var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Runs make-acl.sh with the passwords in files; returns the written file's path.
    static func make(in directory: String, prefix: String = "portcullis:", superuser: Bool = true) throws -> String {
        try gatewayPassword.write(toFile: directory + "/gateway.pw", atomically: true, encoding: .utf8)
        try controlPassword.write(toFile: directory + "/control.pw", atomically: true, encoding: .utf8)
        let result = try runCommand("/bin/bash", [repository + "/cluster/redis/make-acl.sh", "--prefix", prefix,
                                                  "--gateway-password-file", directory + "/gateway.pw",
                                                  "--control-password-file", directory + "/control.pw"])
        guard result.status == 0 else { throw FixtureError("make-acl.sh exited with \(result.status): \(result.stderr)") }
        var text = result.stdout
        if superuser { text += "user \(rootUser) on >\(rootPassword) ~* &* +@all\n" }
        let file = directory + "/users.acl"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The Redis URL of a role user.
    static func url(user: String, password: String, port: Int) -> String {
        "redis://\(user):\(password)@127.0.0.1:\(port)/0"
    }

    /// A control plane and gateways each on its role's user, Redis on the file `make(in:)` writes.
    static func cluster(in directory: String, controlExtra: String = "", asExtra: String = "", asClients: [String] = [],
                        redisPersistence: Bool = false) async throws -> ControlCluster {
        try await ControlCluster(
            controlExtra: controlExtra, asExtra: asExtra, asClients: asClients, redisPersistence: redisPersistence,
            redisArguments: ["--aclfile", try make(in: directory)],
            controlRedisURL: { url(user: "portcullis-control", password: controlPassword, port: $0) },
            gatewayRedisURL: { url(user: "portcullis-gateway", password: gatewayPassword, port: $0) })
    }

    /// Whether a reply is Redis refusing a command on ACL grounds: `NOPERM` for a command, key or
    /// channel; inside a script Redis 7.0 answers `ERR The user executing the script can't …`.
    static func isRefused(_ reply: String) -> Bool {
        reply.contains("NOPERM") || reply.contains("The user executing the script can't")
    }
}

/// `redis-cli --user … --pass …` against a test server (bounded by `timeout`, so a command that
/// would block, such as an accepted MONITOR, cannot hang the suite).
struct RedisCLI {
    let port: Int
    let user: String
    let password: String

    static func gateway(_ port: Int) -> RedisCLI { RedisCLI(port: port, user: "portcullis-gateway", password: ACLFile.gatewayPassword) }
    static func control(_ port: Int) -> RedisCLI { RedisCLI(port: port, user: "portcullis-control", password: ACLFile.controlPassword) }
    static func root(_ port: Int) -> RedisCLI { RedisCLI(port: port, user: ACLFile.rootUser, password: ACLFile.rootPassword) }

    /// The reply as redis-cli prints it without a terminal (stdout and stderr, trimmed).
    func run(_ arguments: [String]) throws -> String {
        let result = try runCommand("/usr/bin/timeout", ["5", "/usr/bin/redis-cli", "-h", "127.0.0.1", "-p", "\(port)",
                                                         "--user", user, "--pass", password, "--no-auth-warning"] + arguments)
        return (result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The number of refusals of `user` in `ACL LOG` as redis-cli prints it without a terminal (one
/// field name or value a line; each entry starts with `count` and its value).
func aclLogCount(_ log: String, user: String) -> Int {
    let lines = log.components(separatedBy: "\n")
    var total = 0, count = 0
    for (index, line) in lines.enumerated() where index + 1 < lines.count {
        if line == "count" { count = Int(lines[index + 1]) ?? 0 }
        if line == "username", lines[index + 1] == user { total += count }
    }
    return total
}

/// One thing a role must not do, as a Redis command. `checkWithAllRights`: the test also runs it
/// as the superuser and expects it to work, so a refusal is the ACL's and not a malformed command
/// (off for commands that would stop or block the server).
struct ForbiddenCommand: CustomStringConvertible {
    let what: String
    let command: [String]
    var checkWithAllRights = true
    var description: String { "\(what): \(command.joined(separator: " "))" }
}

extension ControlPlaneTests {
    @Suite("Redis ACL users (cluster/redis/users.acl)")
    struct RedisACLTests {
        /// What a gateway's credential must not do: everything the control plane alone writes, the
        /// channels it alone publishes on, secrets it has no use for, and administration.
        static let gatewayForbidden: [ForbiddenCommand] = [
            ForbiddenCommand(what: "append a forged entry to the revocation log", command: ["ZADD", "portcullis:rev:log", "99", "99 0 {}"]),
            ForbiddenCommand(what: "replace the signed revocation head", command: ["SET", "portcullis:rev:head", "forged"]),
            ForbiddenCommand(what: "delete the revocation log", command: ["DEL", "portcullis:rev:log"]),
            ForbiddenCommand(what: "remove one log entry", command: ["ZREMRANGEBYSCORE", "portcullis:rev:log", "1", "1"]),
            ForbiddenCommand(what: "rewrite the revocation id index", command: ["HSET", "portcullis:rev:ids", "some-id", "1"]),
            ForbiddenCommand(what: "nominate log entries for pruning", command: ["ZADD", "portcullis:rev:expiry", "0", "1"]),
            ForbiddenCommand(what: "publish a revocation", command: ["PUBLISH", "portcullis:rev:events", "1 1 {}"]),
            ForbiddenCommand(what: "write the log from a script that declares the key",
                             command: ["EVAL", "return redis.call('ZADD', KEYS[1], 99, 'x')", "1", "portcullis:rev:log"]),
            ForbiddenCommand(what: "write the id index from a script that hides the key",
                             command: ["EVAL", "return redis.call('HSET', 'portcullis:rev:ids', 'a', '2')", "0"]),
            ForbiddenCommand(what: "publish a revocation from a script",
                             command: ["EVAL", "return redis.call('PUBLISH', 'portcullis:rev:events', 'x')", "0"]),
            ForbiddenCommand(what: "write a key-set record", command: ["HSET", "portcullis:keys:set:https://issuer.test", "jwks", "{\"keys\":[]}"]),
            ForbiddenCommand(what: "announce a key set", command: ["PUBLISH", "portcullis:keys:events", "v9 https://issuer.test"]),
            ForbiddenCommand(what: "hold the JWKS fetch lock", command: ["SET", "portcullis:keys:lock:https://issuer.test", "gw", "PX", "60000"]),
            ForbiddenCommand(what: "append to the audit stream", command: ["XADD", "portcullis:audit", "*", "actor", "forged"]),
            ForbiddenCommand(what: "read the audit stream", command: ["XREVRANGE", "portcullis:audit", "+", "-", "COUNT", "1"]),
            ForbiddenCommand(what: "pose as a live control plane", command: ["HSET", "portcullis:control:alive", "a", "b"]),
            ForbiddenCommand(what: "read the sealed signing keys", command: ["HGETALL", "portcullis:as:keys"]),
            ForbiddenCommand(what: "read a refresh-token record", command: ["HGETALL", "portcullis:as:rt:0123"]),
            ForbiddenCommand(what: "revive a refresh-token family", command: ["HSET", "portcullis:as:rtf:f1", "revoked", ""]),
            ForbiddenCommand(what: "read other nodes' acknowledgements", command: ["HGETALL", "portcullis:rev:acks:1"]),
            ForbiddenCommand(what: "replace a node record by a string", command: ["SET", "portcullis:node:gw-2", "x"]),
            ForbiddenCommand(what: "write outside the cluster's prefix", command: ["HSET", "other:node:x", "a", "b"]),
            ForbiddenCommand(what: "read outside the cluster's prefix", command: ["GET", "other:rev:head"]),
            ForbiddenCommand(what: "flush the database", command: ["FLUSHALL"]),
            ForbiddenCommand(what: "change the server's configuration", command: ["CONFIG", "SET", "appendonly", "no"]),
            ForbiddenCommand(what: "list every key", command: ["KEYS", "*"]),
            ForbiddenCommand(what: "scan the keyspace", command: ["SCAN", "0"]),
            ForbiddenCommand(what: "watch all traffic (and capture signed writes)", command: ["MONITOR"], checkWithAllRights: false),
            ForbiddenCommand(what: "grant itself rights", command: ["ACL", "SETUSER", "portcullis-gateway", "+@all", "~*"]),
            ForbiddenCommand(what: "flush the script cache", command: ["SCRIPT", "FLUSH"]),
            ForbiddenCommand(what: "use debugging commands", command: ["DEBUG", "SLEEP", "0"]),
            ForbiddenCommand(what: "stop the server", command: ["SHUTDOWN", "NOSAVE"], checkWithAllRights: false),
        ]

        /// What the control plane's credential must not do: administration, the gateways' own records.
        static let controlForbidden: [ForbiddenCommand] = [
            ForbiddenCommand(what: "flush the database", command: ["FLUSHALL"]),
            ForbiddenCommand(what: "flush its database", command: ["FLUSHDB"]),
            ForbiddenCommand(what: "change the server's configuration", command: ["CONFIG", "SET", "appendonly", "no"]),
            ForbiddenCommand(what: "list every key", command: ["KEYS", "*"]),
            ForbiddenCommand(what: "watch all traffic", command: ["MONITOR"], checkWithAllRights: false),
            ForbiddenCommand(what: "grant itself rights", command: ["ACL", "SETUSER", "portcullis-control", "+@all", "~*"]),
            ForbiddenCommand(what: "flush the script cache", command: ["SCRIPT", "FLUSH"]),
            ForbiddenCommand(what: "use debugging commands", command: ["DEBUG", "SLEEP", "0"]),
            ForbiddenCommand(what: "stop the server", command: ["SHUTDOWN", "NOSAVE"], checkWithAllRights: false),
            ForbiddenCommand(what: "forge a gateway's acknowledgement", command: ["HSET", "portcullis:rev:acks:1", "gw-1", "forged"]),
            ForbiddenCommand(what: "publish an acknowledgement", command: ["PUBLISH", "portcullis:rev:acks", "forged"]),
            ForbiddenCommand(what: "reset a rate-limit counter", command: ["SET", "portcullis:rl:per-client:1:client:x", "0"]),
            ForbiddenCommand(what: "write outside the cluster's prefix", command: ["SET", "other:rev:head", "x"]),
            ForbiddenCommand(what: "read outside the cluster's prefix", command: ["GET", "other:rev:head"]),
        ]

        /// Runs `forbidden` as `role` (each must be refused on ACL grounds, and appear in ACL LOG),
        /// then as the superuser (each must work: the refusals were the ACL's).
        func expectRefused(_ forbidden: [ForbiddenCommand], as role: RedisCLI, root: RedisCLI) throws {
            _ = try root.run(["ACL", "LOG", "RESET"])
            for item in forbidden {
                let reply = try role.run(item.command)
                #expect(ACLFile.isRefused(reply), "\(role.user) was not refused: \(item) answered '\(reply)'")
            }
            // Every refusal is Redis's ACL at work, logged with the role's name (ACL LOG folds
            // repeats into one entry with a count).
            let refusals = aclLogCount(try root.run(["ACL", "LOG", "1000"]), user: role.user)
            #expect(refusals >= forbidden.count, "ACL LOG holds \(refusals) refusals of \(role.user) for \(forbidden.count) forbidden commands")
            for item in forbidden where item.checkWithAllRights {
                let reply = try root.run(item.command)
                #expect(!ACLFile.isRefused(reply) && !reply.hasPrefix("ERR") && !reply.hasPrefix("WRONGTYPE"),
                        "with all rights, \(item) should work but answered '\(reply)'")
            }
        }

        @Test("a gateway's Redis credential cannot write a revocation, a key set, the audit stream or control-plane state, publish on their channels, read secrets, or administer Redis")
        func gatewayCredentialIsRefused() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let redis = try await RedisServerFixture.start(extraArguments: ["--aclfile", try ACLFile.make(in: directory)])
            try await withCleanup(redis, { await $0.shutdown() }) { redis in
                let gateway = RedisCLI.gateway(redis.port), root = RedisCLI.root(redis.port)
                // The credential is live and does its own kinds of writes.
                #expect(try gateway.run(["HSET", "portcullis:node:gw-1", "id", "gw-1"]) == "1")
                #expect(try gateway.run(["HSET", "portcullis:rev:acks:1", "gw-1", "ack"]) == "1")
                #expect(try gateway.run(["PUBLISH", "portcullis:rev:acks", "ack"]) == "0")
                // The grant script sets a rate-limit counter found below zero back to zero; SET on
                // anything else stays refused (the list below).
                #expect(try gateway.run(["SET", "portcullis:rl:per-client:1:client:x", "0"]) == "OK")
                // Subscribing is limited to the channels a gateway listens on.
                #expect(ACLFile.isRefused(try gateway.run(["SUBSCRIBE", "portcullis:rev:acks"])))
                #expect(ACLFile.isRefused(try gateway.run(["SUBSCRIBE", "portcullis:keys:refetch"])))
                try expectRefused(Self.gatewayForbidden, as: gateway, root: root)
            }
        }

        @Test("the control plane's Redis credential cannot administer Redis, forge a gateway's acknowledgement or counters, or leave its prefix")
        func controlCredentialIsRefused() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let redis = try await RedisServerFixture.start(extraArguments: ["--aclfile", try ACLFile.make(in: directory)])
            try await withCleanup(redis, { await $0.shutdown() }) { redis in
                let control = RedisCLI.control(redis.port), root = RedisCLI.root(redis.port)
                #expect(try control.run(["SET", "portcullis:control:alive", "control-1", "PX", "1000"]) == "OK")
                #expect(try control.run(["HGETALL", "portcullis:rev:acks:1"]) == "")
                try expectRefused(Self.controlForbidden, as: control, root: root)
            }
        }

        @Test("the shipped file loads as it is and lets nobody in: the default user is off and the role users have no password until make-acl.sh sets one")
        func templateLetsNobodyIn() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let shipped = ACLFile.repository + "/cluster/redis/users.acl"
            let redis = try await RedisServerFixture.start(extraArguments: ["--aclfile", shipped])
            try await withCleanup(redis, { await $0.shutdown() }) { redis in
                let anonymous = try runCommand("/usr/bin/timeout", ["5", "/usr/bin/redis-cli", "-h", "127.0.0.1", "-p", "\(redis.port)", "GET", "portcullis:rev:head"])
                #expect((anonymous.stdout + anonymous.stderr).contains("NOAUTH"))
                for user in ["default", "portcullis-gateway", "portcullis-control", "portcullis-replica", "portcullis-sentinel"] {
                    let reply = try RedisCLI(port: redis.port, user: user, password: ACLFile.gatewayPassword).run(["PING"])
                    #expect(reply.contains("WRONGPASS"), "\(user): \(reply)")
                }
            }
            // The generated file switches the role users on with SHA-256 hashes, never the passwords.
            let generated = try String(contentsOfFile: try ACLFile.make(in: directory, superuser: false), encoding: .utf8)
            #expect(!generated.contains(ACLFile.gatewayPassword) && !generated.contains(ACLFile.controlPassword))
            #expect(generated.contains("user portcullis-gateway reset on #\(sha256Hex(ACLFile.gatewayPassword)) "))
            #expect(generated.contains("user portcullis-control reset on #\(sha256Hex(ACLFile.controlPassword)) "))
            // The default user stays off and without a password; its rights serve only Redis's
            // replay of the append-only file (see the restart test below).
            #expect(generated.contains("user default reset ~* &* +@all\n"))
            // Replica and Sentinel users stay off (no `on`, no password) unless their passwords are given.
            #expect(generated.contains("user portcullis-replica reset +") && generated.contains("user portcullis-sentinel reset +"))
        }

        @Test("make-acl.sh --prefix moves every key and channel pattern to another cluster's prefix and refuses glob characters")
        func anotherPrefix() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let file = try ACLFile.make(in: directory, prefix: "acme:")
            #expect(try !String(contentsOfFile: file, encoding: .utf8).contains("portcullis:"))
            let redis = try await RedisServerFixture.start(extraArguments: ["--aclfile", file])
            try await withCleanup(redis, { await $0.shutdown() }) { redis in
                let gateway = RedisCLI.gateway(redis.port)
                let own = try gateway.run(["HSET", "acme:node:gw-1", "id", "gw-1"])
                #expect(own == "1")
                let ack = try gateway.run(["PUBLISH", "acme:rev:acks", "ack"])
                #expect(ack == "0")
                for forbidden in [["HSET", "portcullis:node:gw-1", "id", "gw-1"], ["HSET", "acme:keys:set:x", "a", "b"], ["PUBLISH", "acme:rev:events", "x"]] {
                    let reply = try gateway.run(forbidden)
                    #expect(ACLFile.isRefused(reply), "\(forbidden): \(reply)")
                }
            }
            for bad in ["acme*", "a?", "[ab]", "two words", ""] {
                let result = try runCommand("/bin/bash", [ACLFile.repository + "/cluster/redis/make-acl.sh", "--prefix", bad],
                                            environment: ["PORTCULLIS_REDIS_GATEWAY_PASSWORD": "a", "PORTCULLIS_REDIS_CONTROL_PASSWORD": "b"])
                #expect(result.status == 2 && result.stdout.isEmpty, "prefix '\(bad)' was accepted")
            }
        }

        /// Redis replays its append-only file as the `default` user and, before the fix of
        /// redis/redis#14541 (not in Debian's 7.0), checks that user's rights again at each
        /// transaction's EXEC — and a script's writes are logged as a transaction. Under the
        /// shipped file as it was (the default user off with no rights) every revocation was
        /// dropped at the restart, silently; a gateway started afterwards admitted the revoked
        /// token (found by an attacker review).
        @Test("with the append-only file on, Redis restarted under the shipped ACL file loses no revocation: the log is read back whole and a gateway started afterwards refuses the revoked token")
        func revocationsSurviveARestartUnderTheACLFile() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl-aof")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await ACLFile.cluster(in: directory, redisPersistence: true)
            defer { Task { await cluster.shutdown() } }
            let root = RedisCLI.root(cluster.redis.port)
            _ = try await cluster.startGateway(id: "gw-1")
            let token = try cluster.clientCredentials().access
            let jti = try #require(claims(of: token)["jti"] as? String)
            let exp = try #require(claims(of: token)["exp"] as? Int)
            let created = try cluster.control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"jti","value":"\#(jti)","exp":\#(exp)}"#)
            #expect(created.status == 201)
            let entries = try root.run(["ZCARD", "portcullis:rev:log"])
            #expect((Int(entries) ?? 0) >= 1, "\(entries)")

            try await cluster.redis.restart()
            #expect(try root.run(["ZCARD", "portcullis:rev:log"]) == entries, "the revocation log was not read back whole")
            let late = try await cluster.startGateway(id: "gw-2")
            try await eventually("the gateway started after the restart refuses the revoked token") {
                try late.request("GET", "/orders", headers: [("Authorization", "Bearer \(token)")]).status == 401
            }
            let listed = try cluster.control.admin("GET", "/v1/revocations").json["items"] as? [[String: Any]] ?? []
            #expect(listed.contains { $0["value"] as? String == jti }, "\(listed)")
        }

        @Test("a control plane and a gateway, each on its own ACL user, revoke and enforce, acknowledge, list membership, sync rate limits, ask for a refetch and sign in users and operators with no command refused")
        func clusterRunsOnItsACLUsers() async throws {
            let directory = try TemporaryDirectory.make(prefix: "portcullis-acl")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try SignInBrowser.users.write(toFile: directory + "/users.yaml", atomically: true, encoding: .utf8)
            let cluster = try await ACLFile.cluster(in: directory, controlExtra: "rate_limits:\n  - {name: per-client, key: client_id, limit: 100000, window: 1h}\n",
                                                    asExtra: "  users_file: \(directory)/users.yaml\n", asClients: [SignInBrowser.client])
            defer { Task { await cluster.shutdown() } }
            let root = RedisCLI.root(cluster.redis.port)
            // Ready means the gateway subscribed and read the signed head and log as portcullis-gateway.
            let gateway = try await cluster.startGateway(id: "gw-1")
            let control = cluster.control

            // The authorization server stored its key and published the key set (control user);
            // the gateway read it and admits the token.
            let token = try cluster.clientCredentials().access
            for _ in 0..<5 { #expect(try cluster.statuses(token) == [200]) }

            // A revocation through the admin API reaches the gateway, which acknowledges it (its
            // node record, the ack hash and the ack channel) and enforces it.
            let jti = try #require(claims(of: token)["jti"] as? String)
            let exp = try #require(claims(of: token)["exp"] as? Int)
            let created = try control.admin("POST", "/v1/revocations?wait=5s", json: #"{"kind":"jti","value":"\#(jti)","exp":\#(exp)}"#)
            #expect(created.status == 201)
            let propagation = created.json["propagation"] as? [String: Any] ?? [:]
            #expect(propagation["complete"] as? Bool == true)
            #expect((propagation["nodes"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } == ["gw-1"])
            #expect(try cluster.statuses(token) == [401])

            // Membership shows the gateway, linked to Redis and syncing rate limits with the cluster.
            try await eventually("the gateway is listed, in step, on Redis, not in rate-limit fallback") {
                let nodes = try control.admin("GET", "/v1/status").json["nodes"] as? [String: Any] ?? [:]
                return nodes["live"] as? Int == 1 && nodes["in_step"] as? Int == 1
                    && (nodes["ratelimit_fallback"] as? [String]) == [] && (nodes["redis_disconnected"] as? [String]) == []
            }
            let listed = try control.admin("GET", "/v1/nodes").json["nodes"] as? [[String: Any]] ?? []
            #expect(listed.compactMap { $0["id"] as? String } == ["gw-1"])

            // The rate-limited route synced its counter (the gateway's script) and the control plane
            // reads it (SCAN and MGET).
            let fresh = try cluster.clientCredentials().access
            for _ in 0..<5 { #expect(try cluster.statuses(fresh) == [200]) }
            try await eventually(timeout: .seconds(5), "demo-client's synced counter is the top consumer") {
                let top = try control.admin("GET", "/v1/ratelimits?top=5").json["top_consumers"] as? [[String: Any]] ?? []
                return top.contains { $0["key"] as? String == "client:builtin/demo-client" && ($0["count"] as? Int ?? 0) >= 5 }
            }

            // A token naming an unknown kid makes the gateway ask for a refetch on keys:refetch.
            let listener = try ManagedProcess(
                executable: "/usr/bin/redis-cli",
                arguments: ["-h", "127.0.0.1", "-p", "\(cluster.redis.port)", "--user", ACLFile.rootUser, "--pass", ACLFile.rootPassword,
                            "--no-auth-warning", "SUBSCRIBE", "portcullis:keys:refetch"],
                logFile: directory + "/refetch.log")
            try await eventually("the listener subscribed") { listener.output.contains("subscribe") }
            let now = Int(Date().timeIntervalSince1970)
            let unknown = [#"{"alg":"ES256","typ":"JWT","kid":"acl-unknown-kid"}"#,
                           #"{"iss":"\#(cluster.issuer)","aud":"\#(ControlCluster.audience)","sub":"x","iat":\#(now),"exp":\#(now + 300)}"#]
                .map { Base64URL.encode(Array($0.utf8)) }.joined(separator: ".") + "." + Base64URL.encode([UInt8](repeating: 1, count: 64))
            #expect(try cluster.statuses(unknown) == [401])
            try await eventually("the gateway's refetch request was published") { listener.output.contains("acl-unknown-kid") }
            _ = await listener.terminate()

            // The authorization server's refresh-token scripts (rotation; RFC 7009 revocation of the
            // family, whose access tokens are revoked cluster-wide), a signing-key rotation that
            // waits for the gateway to hold the new key set, and the audit trail.
            let basic = ("demo-client", ControlCluster.clientSecret)
            let grant = try cluster.clientCredentials()
            let refreshed = try control.oauth("/oauth2/token", form: ["grant_type": "refresh_token", "refresh_token": try #require(grant.refresh)], basic: basic)
            #expect(refreshed.status == 200, "\(refreshed.text)")
            let rotatedAccess = try #require(refreshed.json["access_token"] as? String)
            #expect(try cluster.statuses(rotatedAccess) == [200])
            let familyRevoked = try control.oauth("/oauth2/revoke", form: ["token": try #require(refreshed.json["refresh_token"] as? String),
                                                                           "token_type_hint": "refresh_token"], basic: basic)
            #expect(familyRevoked.status == 200)
            try await eventually("the revoked family's access token is refused") { try cluster.statuses(rotatedAccess) == [401] }
            let rotated = try control.admin("POST", "/v1/keys/builtin/rotate")
            #expect(rotated.status == 200, "\(rotated.text)")
            let newKid = try #require(rotated.json["kid"] as? String)
            try await eventually("a token signed by the new key is admitted") {
                let next = try cluster.clientCredentials().access
                guard header(of: next)["kid"] as? String == newKid else { return false }
                return try cluster.statuses(next) == [200]
            }
            // A user signs in at the authorization server (the login throttle's script counts the
            // attempt and takes it back) and redeems the code; an operator signs in to the console.
            // The build before lacked INCR and DECR: both sign-ins answered 503 (an attacker review).
            let browser = SignInBrowser(control: control)
            let code = try #require(SignInBrowser.redirectParameters(try browser.signIn())["code"])
            #expect(try browser.redeem(code).status == 200)
            let operatorSignIn = try ConsoleVisitor(control: control).signIn()
            #expect(operatorSignIn.status == 303, "\(operatorSignIn.status) \(operatorSignIn.text)")
            let actions = (try control.admin("GET", "/v1/audit?count=50").json["entries"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.contains("revocation.create") && actions.contains("oauth.revoke") && actions.contains("keys.rotate"), "\(actions)")

            // Redis refused nothing to either role, and neither process logged a refusal.
            try await Task.sleep(for: .seconds(1))
            let aclLog = try root.run(["ACL", "LOG"])
            #expect(aclLog.isEmpty, "Redis refused commands: \(aclLog)")
            let clients = try root.run(["CLIENT", "LIST"])
            #expect(clients.contains("user=portcullis-gateway") && clients.contains("user=portcullis-control"))
            #expect(!clients.contains("user=default"))
            for (name, output) in [("gateway", gateway.process.output), ("control plane", control.process.output)] {
                #expect(!output.contains("NOPERM") && !output.contains("WRONGPASS") && !output.contains("NOAUTH"), "the \(name) logged a refusal:\n\(output)")
            }
        }
    }
}
