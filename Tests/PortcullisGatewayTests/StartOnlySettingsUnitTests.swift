@testable import PortcullisGateway
import Testing

/// Which changes a SIGHUP reload refuses as start-only (`StartOnlySettings`, the gateway's list).
@Suite("start-only settings")
struct StartOnlySettingsUnitTests {
    static let routes = "routes: [{name: r, path_prefix: /, upstream: {targets: ['127.0.0.1:2']}}]"

    static func changedKeys(_ old: String, _ new: String) throws -> [String] {
        let before = try GatewayConfig.parse(yaml: old + "\n" + routes, file: "gateway.yaml")
        let after = try GatewayConfig.parse(yaml: new + "\n" + routes, file: "gateway.yaml")
        return before.startOnly.changes(to: after.startOnly)?.changes.map(\.keyPath) ?? []
    }

    @Test("the same values in another layout or order are no change; reloadable keys are not compared")
    func sameValues() throws {
        #expect(try Self.changedKeys("listen: 127.0.0.1:1\nlimits: {idle_timeout: 5s, drain_timeout: 1s}\nrealm: a",
                                     "limits:\n  drain_timeout: 1s\n  idle_timeout: 5s\nlisten: 127.0.0.1:1\nrealm: b").isEmpty)
    }

    @Test("each changed, added or removed start-only key is named, located in the new file")
    func changes() throws {
        #expect(try Self.changedKeys("listen: 127.0.0.1:1\nevent_loops: 1", "listen: 127.0.0.1:2\nhttp2: {enabled: false}") ==
                ["listen", "event_loops", "http2"])
        let before = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\n" + Self.routes, file: "gateway.yaml")
        let after = try GatewayConfig.parse(yaml: "listen: 127.0.0.1:1\nnode_id: gw-9\n" + Self.routes, file: "gateway.yaml")
        let change = try #require(before.startOnly.changes(to: after.startOnly)?.changes.first)
        #expect(change.description == "gateway.yaml:2:10: node_id: added, but it applies only at start: restart the node to apply it")
    }

    @Test("tls: whether it is there is start-only, the files it names are not")
    func tlsPresence() throws {
        let one = "tls: {certificate_chain: a.pem, private_key: a.key}"
        let two = "tls: {certificate_chain: b.pem, private_key: b.key}"
        #expect(try Self.changedKeys("listen: 127.0.0.1:1\n" + one, "listen: 127.0.0.1:1\n" + two).isEmpty)
        #expect(try Self.changedKeys("listen: 127.0.0.1:1\n" + one, "listen: 127.0.0.1:1") == ["tls"])
    }
}
