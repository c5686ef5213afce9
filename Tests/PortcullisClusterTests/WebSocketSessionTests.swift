import Foundation
import PortcullisCluster
import PortcullisJOSE
import PortcullisTestSupport
import Testing

/// WebSockets through real gateway processes, with Python `websockets` as the client and as the
/// upstream echo server (Scripts/websocket_peers.py), and revocations written to a real Redis the
/// way the control plane writes them.
@Suite("WebSocket through the gateway, and closing it when its token ends", .serialized)
struct WebSocketSessionTests {
    @Test("an upgrade is admitted like any request: echoed when allowed, 401 without a token, refused on a route without websocket, a failing upstream handshake relayed, an unreachable upstream 502; refused ones never reach the upstream")
    func admission() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/echo"), token: token),
                .init(url: gateway.ws("/ws/notoken"), token: nil),
                .init(url: gateway.ws("/ws-off/x"), token: token),
                .init(url: gateway.ws("/ws/reject"), token: token),
                .init(url: gateway.ws("/ws-dead/x"), token: token),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [101, 401, 403, 403, 502])
            #expect(results[0].echo == true && results[0].echoAfter == true)
            let log = peers.upstreamLog()
            #expect(log.contains("/ws/echo auth"))
            #expect(log.contains("/ws/reject auth"))
            #expect(!log.contains("notoken") && !log.contains("/ws-off"), "refused upgrades reached the upstream:\n\(log)")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"client\"}") == 1)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") == 0)
        }
    }

    @Test("a client that leaves during the handshake (closing its connection, or resetting its HTTP/2 stream) leaves nothing behind: the upstream connection is closed before the upstream answers, and no session opens")
    func clientLeavesDuringHandshake() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            // The upstream answers "slow" paths after 0.5 s; the client leaves after 0.1 s.
            var reset = WebSocketPeers.Connection.http2(gateway, "/ws/slow-h2", token: try cluster.token())
            reset.abortAfter = 0.1
            guard let results = try await peers.run([
                .init(url: "", token: try cluster.token(), abortAfter: 0.1, host: "127.0.0.1", port: gateway.port, path: "/ws/slow-h1"),
                reset,
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [0, 0])
            try await eventually("the upstream connections are closed before the upstream answers") {
                let log = peers.upstreamLog()
                return log.contains("/ws/slow-h1 left before the answer") && log.contains("/ws/slow-h2 left before the answer")
            }
            #expect(!peers.upstreamLog().contains("closed"), "a WebSocket was opened upstream: \(peers.upstreamLog())")
            let metrics = try gateway.metrics()
            #expect((PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") ?? 0) == 0)
            #expect(PrometheusText.sample(metrics, "portcullis_open_connections") == 0)
        }
    }

    @Test("a client that leaves while the upstream connect is still under way (an upstream that never accepts) has it abandoned at once, over HTTP/1.1 and HTTP/2, and the target is not counted as failed")
    func clientLeavesDuringConnect() async throws {
        try await withWebSocketCluster { cluster, peers in
            guard let stuck = peers.stuckPort else { return }
            let gateway = try await cluster.startGateway(id: "gw-ws")
            // The listener's own fillers stay in SYN-SENT too: only the gateway's are counted.
            func connecting() throws -> [Substring] {
                try runCommand("/usr/bin/env", ["ss", "-Htn", "state", "syn-sent", "dst", "127.0.0.1:\(stuck)"]).stdout.split(separator: "\n")
            }
            let fillers = try connecting().count
            var reset = WebSocketPeers.Connection.http2(gateway, "/ws-stuck/h2", token: try cluster.token())
            reset.abortAfter = 0.3
            guard let results = try await peers.run([
                .init(url: "", token: try cluster.token(), abortAfter: 0.3, host: "127.0.0.1", port: gateway.port, path: "/ws-stuck/h1"),
                reset,
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [0, 0])
            // The route's connect_timeout is 5 s: a connect left running would still be trying.
            try await Task.sleep(for: .milliseconds(300))
            let left = try connecting()
            #expect(left.count == fillers, "connects still under way: \(left.count - fillers)\n\(left.joined(separator: "\n"))")
            #expect((PrometheusText.sample(try gateway.metrics(), "portcullis_upstream_ejections_total{route=\"ws-stuck\"}") ?? 0) == 0)
        }
    }

    @Test("over HTTP/2 each WebSocket counts toward limits.max_connections like a client connection, since each holds an upstream connection: with a limit of 3, one connection carries 2 and the third is refused with 503")
    func webSocketsCountAsConnections() async throws {
        try await withWebSocketCluster { cluster, peers in
            cluster.extraSettings = "limits: {max_connections: 3}"
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run((0..<3).map { .http2(gateway, "/ws/limit-\($0)", token: token, shared: "one") }, hold: 0) else { return }
            #expect(results.map(\.openStatus).sorted { ($0 ?? 0) < ($1 ?? 0) } == [200, 200, 503], "\(results)")
            #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_rejected_connections_total") == 1)
        }
    }

    @Test("a refused WebSocket over HTTP/2 gives its connection slot back at once, even while a client that opens no window holds the refusal's stream: with a limit of 3, two such refusals leave room for a WebSocket on another connection")
    func refusedWebSocketsFreeTheirSlots() async throws {
        try await withWebSocketCluster { cluster, peers in
            cluster.extraSettings = "limits: {max_connections: 3}"
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            var stuck = (0..<2).map { WebSocketPeers.Connection.http2(gateway, "/ws/h2-reject-\($0)", token: token, shared: "no-window") }
            for index in stuck.indices { stuck[index].http2?.window = 0 }
            var later = WebSocketPeers.Connection.http2(gateway, "/ws/h2-after", token: token)
            later.delay = 1
            guard let results = try await peers.run(stuck + [later], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [403, 403, 200], "\(results)")
            #expect(results[2].echo == true, "\(results[2])")
        }
    }

    @Test("revoking the token's jti closes its WebSocket with 1008 within a second; the same token on an on_token_end: allow route and another token stay open")
    func revokedJTI() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let revoked = try cluster.token(jti: "ws-jti-1")
            let other = try cluster.token(jti: "ws-jti-2")
            var revokedAt = 0.0
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/a"), token: revoked),
                .init(url: gateway.ws("/ws-allow/a"), token: revoked),
                .init(url: gateway.ws("/ws/b"), token: other),
            ], hold: 10, whileOpen: {
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.jti, "ws-jti-1")
                try await Task.sleep(for: .milliseconds(1200))
            }) else { return }
            #expect(results.map(\.openStatus) == [101, 101, 101])
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - revokedAt < 1.0, "closed \(closedAt - revokedAt) s after the revocation") }
            #expect(results[1].openAtEnd && results[1].echoAfter == true, "\(results[1])")
            #expect(results[2].openAtEnd && results[2].echoAfter == true, "\(results[2])")
            #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"token_revoked\"}") == 1)
        }
    }

    /// The build before asked a stale node's list the question a new request asks, whose answer
    /// while stale is "stale", not "revoked": a revocation the node applied before its state was
    /// confirmed fresh again never closed its sessions (an attacker review: every stream still
    /// open 15 s on, and the admin API reporting the revocation applied on every node).
    @Test("a revocation a node applies while its revocation state is stale (no head beat for max_staleness) closes its token's WebSocket within a second all the same; another token's stays open")
    func revokedWhileStale() async throws {
        try await withWebSocketCluster { cluster, peers in
            cluster.startBeating()
            let gateway = try await cluster.startGateway(id: "gw-ws-stale", staleness: "1s")
            let revoked = try cluster.token(jti: "ws-stale-1"), other = try cluster.token(jti: "ws-stale-2")
            var revokedAt = 0.0
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/a"), token: revoked),
                .init(url: gateway.ws("/ws/b"), token: other),
            ], hold: 20, whileOpen: {
                cluster.beater?.cancel()
                await cluster.beater?.value
                try await eventually(timeout: .seconds(10), "the node's state goes stale") { try cluster.statuses(other) == [503] }
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.jti, "ws-stale-1")
                try await Task.sleep(for: .milliseconds(1500))
            }) else { return }
            #expect(results.map(\.openStatus) == [101, 101])
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - revokedAt < 1.0, "closed \(closedAt - revokedAt) s after the revocation") }
            #expect(results[1].openAtEnd, "\(results[1])")
        }
    }

    @Test("a WebSocket closes with 1008 when its token reaches exp plus leeway; on an on_token_end: allow route it stays open")
    func expiry() async throws {
        try await withWebSocketCluster(leeway: 1) { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let now = Int64(Date().timeIntervalSince1970)
            let exp = now + 2
            let short = try cluster.signer.sign(claims: [
                "iss": .string(TestCluster.issuer), "aud": .string(TestCluster.audience), "sub": .string("short"),
                "jti": .string(UUID().uuidString), "iat": .integer(now - 1), "exp": .integer(exp),
            ])
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/short"), token: short),
                .init(url: gateway.ws("/ws-allow/short"), token: short),
            ], hold: 4.5) else { return }
            #expect(results.map(\.openStatus) == [101, 101])
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token expired", "\(results[0])")
            if let closedAt = results[0].closedAt {
                let due = Double(exp + 1)
                #expect(closedAt >= due - 0.05 && closedAt < due + 0.5, "closed \(closedAt - due) s from exp + leeway")
            }
            #expect(results[1].openAtEnd && results[1].echoAfter == true, "\(results[1])")
        }
    }

    @Test("the idle timeout closes a silent WebSocket with 1001; a frame over max_frame_bytes closes it with 1009")
    func limits() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            let started = Date().timeIntervalSince1970
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws-idle/x"), token: token),
                .init(url: gateway.ws("/ws/big"), token: token, sendAfterReady: 70_000),
                .init(url: gateway.ws("/ws/small"), token: token, sendAfterReady: 60_000),
            ], hold: 3) else { return }
            #expect(results[0].closeCode == 1001 && results[0].closeReason == "idle timeout", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - started >= 0.9, "idle close after \(closedAt - started) s") }
            #expect(results[1].closeCode == 1009, "\(results[1])")
            #expect(results[2].openAtEnd && results[2].echoAfter == true, "\(results[2])")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"idle_timeout\"}") == 1)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"too_large\"}") == 1)
        }
    }

    @Test("frames from a real client reach a real echo server and come back byte for byte: fragmented text and binary messages, a ping's payload in its pong, a 70 000-byte message with a 64-bit length")
    func bytesIntact() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws-allow/intact"), token: try cluster.token(), integrity: true),
            ], hold: 0) else { return }
            #expect(results[0].openStatus == 101 && results[0].echo == true, "\(results[0])")
            #expect(results[0].integrity == "ok", "\(results[0])")
        }
    }

    @Test("a close of the gateway's own (token revoked, idle timeout, maximum lifetime) while a 200 000-byte frame is half way to the client comes after that frame's last byte: the client gets the whole message intact, then the close frame; the upstream gets the same code, masked")
    func gatewayCloseAtFrameBoundary() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let revoked = try cluster.token(jti: "ws-stream-1")
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws-raw/revoked"), token: revoked, stream: true),
                .init(url: gateway.ws("/ws-raw-idle/idle"), token: try cluster.token(), stream: true),
                .init(url: gateway.ws("/ws-raw-life/life"), token: try cluster.token(), stream: true),
            ], hold: 10, whileOpen: {
                _ = try await cluster.revoke(.jti, "ws-stream-1")
                try await Task.sleep(for: .milliseconds(2500))
            }) else { return }
            let expected: [(code: Int, reason: String, path: String)] = [
                (1008, "token revoked", "/ws-raw/revoked"), (1001, "idle timeout", "/ws-raw-idle/idle"), (1001, "maximum lifetime reached", "/ws-raw-life/life"),
            ]
            let log = peers.upstreamLog()
            for (result, want) in zip(results, expected) {
                #expect(result.openStatus == 101 && result.streamBytes == 200_000 && result.streamIntact == true, "\(result)")
                #expect(result.closeCode == want.code && result.closeReason == want.reason, "\(result)")
                #expect(log.contains("\(want.path) gateway-close \(want.code) masked"), "\(log)")
            }
        }
    }

    @Test("a WebSocket over HTTP/2 (RFC 8441) is admitted like an upgrade: the gateway offers extended CONNECT, an admitted one answers 200 without the HTTP/1.1 handshake's fields and carries fragments, pings and a 70 000-byte message byte for byte, two share one connection; 401 without a token, 403 on a route without websocket, a failing upstream handshake relayed, 502 for an unreachable upstream, one whose answer does not match the gateway's key, or one answering 200 rather than 101 (a 200 would tell the client the tunnel is open)")
    func overHTTP2() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .http2(gateway, "/ws-allow/h2-intact", token: token).with(integrity: true),
                .http2(gateway, "/ws/h2-notoken", token: nil),
                .http2(gateway, "/ws-off/h2", token: token),
                .http2(gateway, "/ws/h2-reject", token: token),
                .http2(gateway, "/ws-dead/h2", token: token),
                .http2(gateway, "/ws-raw/h2-badaccept", token: token),
                .http2(gateway, "/ws-raw/h2-answer200", token: token),
                .http2(gateway, "/ws/h2-shared-a", token: token, shared: "one"),
                .http2(gateway, "/ws/h2-shared-b", token: token, shared: "one"),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [200, 401, 403, 403, 502, 502, 502, 200, 200], "\(results)")
            #expect(results.allSatisfy { $0.enableConnectProtocol == 1 })
            #expect(results[0].echo == true && results[0].integrity == "ok" && results[0].echoAfter == true, "\(results[0])")
            #expect(results[7].echo == true && results[8].echo == true && results[7].echoAfter == true && results[8].echoAfter == true)
            #expect(peers.upstreamLog().contains("/ws-raw/h2-answer200 answered 200"))
            let fields = results[0].openFields ?? []
            #expect(fields.contains("x-request-id"))
            #expect(!fields.contains("sec-websocket-accept") && !fields.contains("upgrade") && !fields.contains("connection"), "\(fields)")
            let log = peers.upstreamLog()
            #expect(log.contains("/ws-allow/h2-intact auth") && log.contains("/ws/h2-reject auth"), "\(log)")
            #expect(!log.contains("h2-notoken") && !log.contains("/ws-off/h2"), "refused upgrades reached the upstream:\n\(log)")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"client\"}") == 3)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") == 0)
        }
    }

    /// The build before passed every field of the upstream's answer on but the policy's and
    /// `Content-Length`, so a field the upstream named in `Connection` — meant for the gateway's
    /// hop alone — reached the client (an attacker review).
    @Test("a field the upstream names in Connection in its answer to a WebSocket handshake (101 or a refusal) does not reach the client, over HTTP/1.1 or HTTP/2")
    func connectionListedFieldsStayAtTheGateway() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/hop"), token: token),
                .init(url: gateway.ws("/ws/hop-reject"), token: token),
                .http2(gateway, "/ws/h2-hop", token: token),
                .http2(gateway, "/ws/h2-hop-reject", token: token),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [101, 403, 200, 403], "\(results)")
            for result in results {
                #expect(result.openFields?.isEmpty == false, "\(result)")
                #expect(result.openFields?.contains("x-internal-hop") == false, "\(result)")
            }
            #expect(peers.upstreamLog().contains("/ws/hop auth"), "the upstream did not answer the handshakes")
        }
    }

    /// The build before passed a refusal's body on with its `gzip` coding undeclared (the coding
    /// and `chunked` taken off), and skipped any number of interim heads before the 101 (an
    /// upstream sending them without end held the event loop until the handshake timeout); both
    /// found by an attacker review.
    @Test("an upstream's answer to a WebSocket handshake in a transfer coding other than chunked, or after more than 8 interim (1xx) heads, is a 502, over HTTP/1.1 and HTTP/2")
    func handshakeAnswerCodingsAndInterimHeads() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws-raw/te403"), token: token),
                .init(url: gateway.ws("/ws-raw/interimflood"), token: token),
                .http2(gateway, "/ws-raw/h2-te403", token: token),
                .http2(gateway, "/ws-raw/h2-interimflood", token: token),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [502, 502, 502, 502], "\(results)")
            #expect(PrometheusText.sample(try gateway.metrics(), #"portcullis_upstream_failures_total{route="ws-raw",kind="protocol_error"}"#) == 4)
        }
    }

    /// The upstream's answer is read by NIO's HTTP/1.1 decoder (heads up to 80 KB); 8 000
    /// backslashes take 19 KB in HPACK's Huffman code. The build before wrote such an answer to
    /// the client's stream as it was, and swift-nio-http2, unable to fit it in one frame, closed
    /// the client's whole connection, with the WebSocket beside it.
    @Test("over HTTP/2, an upstream's answer to a WebSocket handshake (101 or a refusal) too large for one HTTP/2 frame is a 502 for its stream alone; a WebSocket on the same connection goes on")
    func overHTTP2AnswerTooLargeForOneFrame() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            guard let results = try await peers.run([
                .http2(gateway, "/ws/h2-beside", token: token, shared: "one"),
                .http2(gateway, "/ws/h2-huge", token: token, shared: "one"),
                .http2(gateway, "/ws/h2-huge-reject", token: token, shared: "one"),
            ], hold: 0) else { return }
            #expect(results.map(\.openStatus) == [200, 502, 502], "\(results)")
            #expect(results[0].echo == true && results[0].echoAfter == true, "\(results[0])")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, #"portcullis_upstream_failures_total{route="ws",kind="protocol_error"}"#) == 2)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") == 0)
        }
    }

    @Test("over HTTP/2, revoking a token closes its WebSocket with 1008 after the 200 000-byte frame in flight, while another token's WebSocket on the same connection stays open and echoes")
    func revokedOverHTTP2() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let revoked = try cluster.token(jti: "ws-h2-1")
            var revokedAt = 0.0
            guard let results = try await peers.run([
                .http2(gateway, "/ws/h2-revoked", token: revoked, shared: "one"),
                .http2(gateway, "/ws/h2-other", token: try cluster.token(), shared: "one"),
                .http2(gateway, "/ws-raw/h2-stream", token: revoked).with(stream: true),
            ], hold: 10, whileOpen: {
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.jti, "ws-h2-1")
                try await Task.sleep(for: .milliseconds(1500))
            }) else { return }
            #expect(results.map(\.openStatus) == [200, 200, 200], "\(results)")
            #expect(results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            if let closedAt = results[0].closedAt { #expect(closedAt - revokedAt < 1.0, "closed \(closedAt - revokedAt) s after the revocation") }
            #expect(results[1].openAtEnd && results[1].echoAfter == true, "\(results[1])")
            #expect(results[2].streamBytes == 200_000 && results[2].streamIntact == true, "\(results[2])")
            #expect(results[2].closeCode == 1008, "\(results[2])")
            #expect(peers.upstreamLog().contains("/ws-raw/h2-stream gateway-close 1008 masked"), "\(peers.upstreamLog())")
            #expect(PrometheusText.sample(try gateway.metrics(), "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"token_revoked\"}") == 2)
        }
    }

    /// NIO's response decoder watched writes, and left the upstream pipeline one event-loop task
    /// after the 101: the build before stopped the whole process on a frame the relay wrote to
    /// the upstream in that gap — the frames of a client that sends before its 200, as RFC 8441
    /// allows, or the close of one whose stream ended (found by an attacker review).
    @Test("over HTTP/2, a WebSocket whose first message, or the end of its stream, comes before the gateway's 200 is relayed or closed, and the gateway goes on: the early message reaches the echo server and comes back first")
    func sendingBeforeThe200() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            var early = WebSocketPeers.Connection.http2(gateway, "/ws/h2-early", token: token)
            early.http2?.early = "sent before the 200"
            var ended = WebSocketPeers.Connection.http2(gateway, "/ws/h2-ended", token: token)
            ended.http2?.endEarly = true
            var later = WebSocketPeers.Connection.http2(gateway, "/ws/h2-later", token: token)
            later.delay = 1
            guard let results = try await peers.run([early, ended, later], hold: 1) else { return }
            #expect(results[0].openStatus == 200 && results[0].earlyEcho == true && results[0].echo == true, "\(results[0])")
            #expect(results[1].openStatus == 200, "\(results[1])")
            #expect(results[2].openStatus == 200 && results[2].echo == true, "the gateway did not go on: \(results[2])")
            #expect(gateway.process.isRunning)
        }
    }

    /// The same gap, reached by a token that ends while the upstream has not answered yet: the
    /// gateway's close frame for the upstream met NIO's decoder, and the build before stopped —
    /// an operator revoking a user who was reconnecting took the node down (an attacker review).
    @Test("a token revoked while the upstream has not yet answered the WebSocket handshake closes the WebSocket with 1008 as soon as it opens, over HTTP/1.1 and HTTP/2, and the gateway goes on")
    func tokenEndsDuringTheHandshake() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let revoked = try cluster.token(jti: "ws-race")
            let overHTTP2 = WebSocketPeers.Connection.http2(gateway, "/ws/slow-race-h2", token: revoked)
            var later = WebSocketPeers.Connection(url: gateway.ws("/ws/after-race"), token: try cluster.token())
            later.delay = 1.5
            var duringHandshakes = false
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/slow-race-h1"), token: revoked), overHTTP2, later,
            ], hold: 1, meanwhile: {
                // The upstream answers "slow" paths 0.5 s after it logs them: revoked in between.
                guard try await Poll.until(timeout: .seconds(20), {
                    let log = peers.upstreamLog()
                    return log.contains("/ws/slow-race-h1 auth") && log.contains("/ws/slow-race-h2 auth")
                }) else { return }
                _ = try await cluster.revoke(.jti, "ws-race")
                duringHandshakes = !peers.upstreamLog().contains("answering")
            }) else { return }
            #expect(duringHandshakes, "the revocation did not land during the handshakes: \(peers.upstreamLog())")
            #expect(results[0].openStatus == 101 && results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            #expect(results[1].openStatus == 200 && results[1].closeCode == 1008 && results[1].closeReason == "token revoked", "\(results[1])")
            #expect(results[2].openStatus == 101 && results[2].echo == true, "the gateway did not go on: \(results[2])")
            #expect(gateway.process.isRunning)
        }
    }

    /// The build before checked a session's key only when a key-set change came: a reload that
    /// removed the key while the upstream had not yet answered the handshake found no session
    /// to end, and the WebSocket that opened after it was never checked (an attacker review kept
    /// such sockets open 12 s after the reload, until their token's exp).
    @Test("a WebSocket whose token's signing key a reload removes while the upstream has not yet answered the handshake closes with 1008 as soon as it opens, over HTTP/1.1 and HTTP/2; a token of the key that stays keeps its WebSocket")
    func keyRemovedDuringTheHandshake() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let kept = JWTSigner(key: try SigningKey.generate(.ES256), keyID: "k-kept")
            try TestCluster.jwks([cluster.signer, kept]).write(toFile: gateway.directory + "/jwks.json", atomically: true, encoding: .utf8)
            gateway.process.signal(SIGHUP)
            try await eventually("the first reload") { gateway.process.output.components(separatedBy: "configuration reloaded").count == 2 }
            let leaked = try cluster.token(jti: "ws-key-race")
            let stays = WebSocketPeers.Connection(url: gateway.ws("/ws/slower-kept"), token: try cluster.token(signer: kept))
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/slower-key-h1"), token: leaked),
                WebSocketPeers.Connection.http2(gateway, "/ws/slower-key-h2", token: leaked),
                stays,
            ], hold: 1, meanwhile: {
                // The upstream answers "slower" paths 3 s after it logs them: the key goes in between.
                guard try await Poll.until(timeout: .seconds(20), {
                    let log = peers.upstreamLog()
                    return log.contains("/ws/slower-key-h1 auth") && log.contains("/ws/slower-key-h2 auth") && log.contains("/ws/slower-kept auth")
                }) else { return }
                try TestCluster.jwks([kept]).write(toFile: gateway.directory + "/jwks.json", atomically: true, encoding: .utf8)
                gateway.process.signal(SIGHUP)
                try await eventually("the reload") { gateway.process.output.components(separatedBy: "configuration reloaded").count == 3 }
                #expect(!peers.upstreamLog().contains("answering"), "the reload did not land during the handshakes: \(peers.upstreamLog())")
            }) else { return }
            #expect(results[0].openStatus == 101 && results[0].closeCode == 1008 && results[0].closeReason == "token revoked", "\(results[0])")
            #expect(results[1].openStatus == 200 && results[1].closeCode == 1008 && results[1].closeReason == "token revoked", "\(results[1])")
            #expect(results[2].openStatus == 101 && results[2].echo == true && results[2].closeCode != 1008, "\(results[2])")
        }
    }

    /// The relay took a close frame's header for the peer's close: the build before ended the
    /// session there, so a client that sent only the header of a close frame kept its WebSocket
    /// past its token's revocation or expiry — 118 s in an attacker review, until the route's
    /// maximum lifetime (24 h by default).
    @Test("a client that sends a close frame's header and never its payload still has its WebSocket closed when its token is revoked (1008, its connection after the 1 s grace); without a revocation, both connections close 5 s after the header (the close handshake's limit)")
    func halfSentCloseFrame() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            var revoked = WebSocketPeers.Connection(url: gateway.ws("/ws/half-close-revoked"), token: try cluster.token(jti: "ws-half"))
            revoked.halfClose = true
            var unrevoked = WebSocketPeers.Connection(url: gateway.ws("/ws/half-close"), token: try cluster.token())
            unrevoked.halfClose = true
            var revokedAt = 0.0, readyAt = 0.0
            guard let results = try await peers.run([revoked, unrevoked], hold: 10, whileOpen: {
                readyAt = Date().timeIntervalSince1970
                try await Task.sleep(for: .milliseconds(300))
                revokedAt = Date().timeIntervalSince1970
                _ = try await cluster.revoke(.jti, "ws-half")
                try await Task.sleep(for: .milliseconds(7500))
            }) else { return }
            #expect(results.map(\.openStatus) == [101, 101])
            let revokedClosed = try #require(results[0].closedAt, "open past its revocation: \(results[0])")
            #expect(revokedClosed - revokedAt < 3, "closed \(revokedClosed - revokedAt) s after the revocation")
            let unrevokedClosed = try #require(results[1].closedAt, "open past the close handshake's limit: \(results[1])")
            #expect(unrevokedClosed - readyAt > 4 && unrevokedClosed - readyAt < 7.5, "closed \(unrevokedClosed - readyAt) s after the header")
            let metrics = try gateway.metrics()
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_closed_total{protocol=\"websocket\",reason=\"token_revoked\"}") == 1)
            #expect(PrometheusText.sample(metrics, "portcullis_sessions_open{protocol=\"websocket\"}") == 0)
        }
    }

    @Test("SIGTERM closes open WebSockets over HTTP/1.1 and HTTP/2 alike with 1001 'server shutting down' at once, so they do not hold the drain")
    func drainClosesBoth() async throws {
        try await withWebSocketCluster { cluster, peers in
            let gateway = try await cluster.startGateway(id: "gw-ws")
            let token = try cluster.token()
            var stoppedAfter = 0.0
            guard let results = try await peers.run([
                .init(url: gateway.ws("/ws/drain-h1"), token: token),
                .http2(gateway, "/ws/drain-h2", token: token),
            ], hold: 10, whileOpen: {
                let started = Date()
                await gateway.stop()
                stoppedAfter = Date().timeIntervalSince(started)
            }) else { return }
            #expect(results.map(\.openStatus) == [101, 200], "\(results)")
            for result in results {
                #expect(result.closeCode == 1001 && result.closeReason == "server shutting down", "\(result)")
            }
            // limits.drain_timeout is 30 s: a WebSocket holding the drain would hold the exit.
            #expect(stoppedAfter < 5, "the gateway took \(stoppedAfter) s to stop")
        }
    }
}

/// A cluster whose gateways have WebSocket routes to the Python echo server.
func withWebSocketCluster(leeway: Int? = nil, extraRoutes: String = "", _ body: (TestCluster, WebSocketPeers) async throws -> Void) async throws {
    let peers = try await WebSocketPeers.start()
    try await withCleanup(peers, { await $0.stop() }) { peers in
        guard let echo = peers.echoAddress, let raw = peers.rawAddress, let stuck = peers.stuckPort else { return }
        try await withCluster { cluster in
            cluster.issuerLeeway = leeway
            cluster.extraRoutes = """
              - name: ws
                path_prefix: /ws
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: {max_frame_bytes: 64KiB}
              - name: ws-allow
                path_prefix: /ws-allow
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: true
                on_token_end: allow
              - name: ws-idle
                path_prefix: /ws-idle
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
                websocket: {idle_timeout: 1s}
              - name: ws-dead
                path_prefix: /ws-dead
                upstream: {targets: [127.0.0.1:1]}
                auth: {type: jwt}
                websocket: true
              - name: ws-raw
                path_prefix: /ws-raw
                upstream: {targets: [\(raw)]}
                auth: {type: jwt}
                websocket: true
              - name: ws-raw-idle
                path_prefix: /ws-raw-idle
                upstream: {targets: [\(raw)]}
                auth: {type: jwt}
                websocket: {idle_timeout: 1s}
              - name: ws-raw-life
                path_prefix: /ws-raw-life
                upstream: {targets: [\(raw)]}
                auth: {type: jwt}
                websocket: {max_lifetime: 1s}
              - name: ws-stuck
                path_prefix: /ws-stuck
                upstream: {targets: [127.0.0.1:\(stuck)], connect_timeout: 5s}
                auth: {type: jwt}
                websocket: true
              - name: ws-off
                path_prefix: /ws-off
                upstream: {targets: [\(echo)]}
                auth: {type: jwt}
            """ + (extraRoutes.isEmpty ? "" : "\n" + extraRoutes)
            try await body(cluster, peers)
        }
    }
}

extension GatewayProcess {
    func ws(_ path: String) -> String { "ws://127.0.0.1:\(port)\(path)" }
}

extension WebSocketPeers.Connection {
    func with(integrity: Bool? = nil, stream: Bool? = nil) -> Self {
        var copy = self
        if let integrity { copy.integrity = integrity }
        if let stream { copy.stream = stream }
        return copy
    }
}

/// The Python peers: an echo server that runs for the whole test, and client runs.
final class WebSocketPeers: Sendable {
    struct Connection: Encodable {
        let url: String
        let token: String?
        /// Sends a binary message this large once every connection is open, and reads its echo.
        var sendAfterReady: Int? = nil
        /// Also echoes a fragmented text and binary message, a ping with a payload and a 70 000-byte
        /// message (64-bit length); the result's `integrity` says which failed, or "ok".
        var integrity: Bool? = nil
        /// Instead of echoing: reads the one 200 000-byte message the raw server streams.
        var stream: Bool? = nil
        /// Instead of a WebSocket client: a raw upgrade request to `host`:`port` `path`, whose
        /// connection closes after this many seconds without waiting for an answer (with `http2`:
        /// an extended CONNECT whose stream is reset after this many seconds).
        var abortAfter: Double? = nil
        var host: String? = nil
        var port: Int? = nil
        var path: String? = nil
        /// Instead of `url`: a WebSocket over HTTP/2 (RFC 8441) by extended CONNECT.
        var http2: HTTP2Target? = nil
        /// Seconds to wait before opening.
        var delay: Double? = nil
        /// After the echo, the header of a close frame whose payload never follows.
        var halfClose: Bool? = nil

        struct HTTP2Target: Encodable {
            let port: Int
            let path: String
            /// Connections with the same name share one HTTP/2 connection (a stream each).
            var shared: String? = nil
            /// The client's SETTINGS_INITIAL_WINDOW_SIZE (0: the gateway can send its streams no DATA).
            var window: Int? = nil
            /// A text message sent right after the extended CONNECT, before the gateway's 200; its
            /// echo is read first (`Result.earlyEcho`).
            var early: String? = nil
            /// The client's stream ended right after the extended CONNECT, before the gateway's 200.
            var endEarly: Bool? = nil

            enum CodingKeys: String, CodingKey {
                case port, path, shared, window, early
                case endEarly = "end_early"
            }
        }

        /// A WebSocket over HTTP/2 to `gateway`'s `path`.
        static func http2(_ gateway: GatewayProcess, _ path: String, token: String?, shared: String? = nil) -> Connection {
            Connection(url: "", token: token, http2: HTTP2Target(port: gateway.port, path: path, shared: shared))
        }

        enum CodingKeys: String, CodingKey {
            case url, token, host, port, path, integrity, stream, http2, delay
            case sendAfterReady = "send_after_ready", abortAfter = "abort_after", halfClose = "half_close"
        }
    }

    struct Result: Decodable, CustomStringConvertible {
        let index: Int
        let openStatus: Int?
        let echo: Bool?
        let echoAfter: Bool?
        let closeCode: Int?
        let closeReason: String?
        let closedAt: Double?
        let openAtEnd: Bool
        let integrity: String?
        /// The length of the raw server's message as received, and whether it is byte for byte the one sent.
        let streamBytes: Int?
        let streamIntact: Bool?
        /// Over HTTP/2: the gateway's SETTINGS_ENABLE_CONNECT_PROTOCOL, the names of the fields of
        /// its answer, and the client's error when the stream could not be opened.
        let enableConnectProtocol: Int?
        let openFields: [String]?
        let openError: String?
        /// Over HTTP/2: whether the message sent before the 200 came back first.
        let earlyEcho: Bool?

        enum CodingKeys: String, CodingKey {
            case index, echo, integrity
            case earlyEcho = "early_echo"
            case enableConnectProtocol = "enable_connect_protocol", openFields = "open_fields", openError = "open_error"
            case openStatus = "open_status", echoAfter = "echo_after", closeCode = "close_code", closeReason = "close_reason"
            case closedAt = "closed_at", openAtEnd = "open_at_end", streamBytes = "stream_bytes", streamIntact = "stream_intact"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            index = try c.decode(Int.self, forKey: .index)
            openStatus = try c.decodeIfPresent(Int.self, forKey: .openStatus)
            echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
            echoAfter = try c.decodeIfPresent(Bool.self, forKey: .echoAfter)
            closeCode = try c.decodeIfPresent(Int.self, forKey: .closeCode)
            closeReason = try c.decodeIfPresent(String.self, forKey: .closeReason)
            closedAt = try c.decodeIfPresent(Double.self, forKey: .closedAt)
            openAtEnd = try c.decodeIfPresent(Bool.self, forKey: .openAtEnd) ?? false
            integrity = try c.decodeIfPresent(String.self, forKey: .integrity)
            streamBytes = try c.decodeIfPresent(Int.self, forKey: .streamBytes)
            streamIntact = try c.decodeIfPresent(Bool.self, forKey: .streamIntact)
            enableConnectProtocol = try c.decodeIfPresent(Int.self, forKey: .enableConnectProtocol)
            openFields = try c.decodeIfPresent([String].self, forKey: .openFields)
            openError = try c.decodeIfPresent(String.self, forKey: .openError)
            earlyEcho = try c.decodeIfPresent(Bool.self, forKey: .earlyEcho)
        }

        var description: String {
            "#\(index) status \(openStatus.map(String.init) ?? "-") close \(closeCode.map(String.init) ?? "-") '\(closeReason ?? "")' open at end \(openAtEnd) echo after \(echoAfter.map(String.init) ?? "-") integrity \(integrity ?? "-") stream \(streamBytes.map(String.init) ?? "-") intact \(streamIntact.map(String.init) ?? "-")\(openError.map { " error \($0)" } ?? "")"
        }
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/websocket_peers.py").path

    let directory: String
    let server: ManagedProcess
    /// `127.0.0.1:port` of the echo server; nil when Python `websockets` is missing.
    let echoAddress: String?
    /// `127.0.0.1:port` of the raw server that streams one frame in two halves around the
    /// gateway's close frame.
    let rawAddress: String?

    /// The port of a listener on 127.0.0.1 a connect to hangs on (its accept queue is full).
    let stuckPort: Int?

    private init(directory: String, server: ManagedProcess, echoAddress: String?, rawAddress: String?, stuckPort: Int?) {
        self.stuckPort = stuckPort
        self.directory = directory
        self.server = server
        self.echoAddress = echoAddress
        self.rawAddress = rawAddress
    }

    static func start() async throws -> WebSocketPeers {
        let directory = try TemporaryDirectory.make(prefix: "portcullis-ws")
        let server = try ManagedProcess(executable: "/usr/bin/env",
                                        arguments: ["python3", script, "server", "--port-file", directory + "/port", "--log", directory + "/upstream.log"],
                                        logFile: directory + "/server.out")
        var address: String?
        _ = try await Poll.until(timeout: .seconds(10)) {
            if let port = try? String(contentsOfFile: directory + "/port", encoding: .utf8) {
                address = "127.0.0.1:\(port)"
                return true
            }
            return !server.isRunning
        }
        if address == nil {
            if !server.isRunning, await server.waitForExit(timeout: .seconds(1)) == 77 {
                Issue.record("Python websockets is missing (cluster/setup.sh installs it)")
            } else {
                Issue.record("the echo server did not start:\n\(server.output)")
            }
        }
        let raw = (try? String(contentsOfFile: directory + "/port.raw", encoding: .utf8)).map { "127.0.0.1:\($0)" }
        let stuck = (try? String(contentsOfFile: directory + "/port.stuck", encoding: .utf8)).flatMap { Int($0) }
        return WebSocketPeers(directory: directory, server: server, echoAddress: address, rawAddress: raw, stuckPort: stuck)
    }

    func upstreamLog() -> String {
        (try? String(contentsOfFile: directory + "/upstream.log", encoding: .utf8)) ?? ""
    }

    /// Opens `plan`'s connections (each echoes once), then watches them for `hold` seconds, or
    /// until `whileOpen` (if given) has run; returns what each saw. `meanwhile` runs once the
    /// clients have started, before they are all open.
    func run(_ plan: [Connection], hold: Double, meanwhile: (() async throws -> Void)? = nil,
             whileOpen: (() async throws -> Void)? = nil) async throws -> [Result]? {
        let run = UUID().uuidString.prefix(8)
        let prefix = "\(directory)/run-\(run)"
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: prefix + ".plan.json"))
        let clients = try ManagedProcess(executable: "/usr/bin/env",
                                         arguments: ["python3", Self.script, "clients", "--plan", prefix + ".plan.json", "--out", prefix + ".out.json",
                                                     "--ready", prefix + ".ready", "--done", prefix + ".done", "--hold", String(hold)],
                                         logFile: prefix + ".clients.log")
        try await meanwhile?()
        let ready = try await Poll.until(timeout: .seconds(30)) {
            FileManager.default.fileExists(atPath: prefix + ".ready") || !clients.isRunning
        }
        guard ready, FileManager.default.fileExists(atPath: prefix + ".ready") else {
            Issue.record("the WebSocket clients did not get ready:\n\(clients.output)")
            await clients.kill()
            return nil
        }
        if let whileOpen {
            try await whileOpen()
            _ = FileManager.default.createFile(atPath: prefix + ".done", contents: nil)
        }
        guard await clients.waitForExit(timeout: .seconds(hold + 30)) == 0,
              let data = FileManager.default.contents(atPath: prefix + ".out.json") else {
            Issue.record("the WebSocket clients failed:\n\(clients.output)")
            await clients.kill()
            return nil
        }
        return try JSONDecoder().decode([Result].self, from: data)
    }

    func stop() async {
        _ = await server.terminate()
    }
}
