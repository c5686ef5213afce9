import PortcullisCluster
import PortcullisConfig
import PortcullisTestSupport
import Testing

@Suite("the cluster: section of a node's config")
struct ClusterConfigTests {
    func parse(_ yaml: String) throws -> ClusterConfig {
        try ClusterConfig(node: try ConfigNode.parse(yaml: yaml, file: "gw.yaml"), baseDirectory: "/")
    }

    @Test("a rediss-sentinel:// URL without redis_tls.server_name is refused, naming the line")
    func sentinelOverTLSNeedsServerName() throws {
        let authority = try TestCertificateAuthority.make(name: "Redis CA")
        let secret = String(repeating: "A", count: 43)
        let withoutName = """
        redis: rediss-sentinel://gw:pw@s1:26380,s2:26380/pcx
        redis_tls: {ca_file: \(authority.certificate)}
        secret: \(secret)
        """
        do {
            _ = try parse(withoutName)
            Issue.record("a rediss-sentinel:// URL without server_name was accepted")
        } catch {
            #expect("\(error)".contains("gw.yaml:1"), "\(error)")
            #expect("\(error)".contains("redis_tls.server_name"), "\(error)")
        }
        // Without redis_tls at all (the system's roots), the same.
        do {
            _ = try parse("redis: rediss-sentinel://gw:pw@s1:26380/pcx\nsecret: \(secret)")
            Issue.record("a rediss-sentinel:// URL without redis_tls was accepted")
        } catch {
            #expect("\(error)".contains("redis_tls.server_name"), "\(error)")
        }
        let named = try parse(withoutName.replacingOccurrences(of: "}", with: ", server_name: redis.pcx}"))
        #expect(named.redis.tls?.serverName == "redis.pcx")
        // Plain-text Sentinel and direct rediss:// need no name.
        _ = try parse("redis: redis-sentinel://gw:pw@s1:26379/pcx\nsecret: \(secret)")
        _ = try parse("redis: rediss://gw:pw@redis-1:6380\nredis_tls: {ca_file: \(authority.certificate)}\nsecret: \(secret)")
    }
}
