import Foundation
import PortcullisTestSupport
import Testing

/// A peer that paces 1-byte pieces toward a side that has stopped reading: every piece used to
/// wait in the gateway as a write of its own (NIO bounds what waits in bytes, 64 KiB, not in
/// writes), about 140 bytes of memory per byte held. The gateway, both peers
/// (Scripts/paced_peer.py) run in a network namespace whose TCP socket buffers are 4 KiB, so that
/// what the stopped side does not take waits in the gateway within a test's seconds rather than in
/// the kernel's megabytes. The chunk framing of an HTTP/1.1 body shows the writes: each write of
/// body bytes is one chunk.
@Suite("small writes toward a peer that is behind (network namespace)", .serialized)
struct PacedSmallWritesTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/paced_peer.py").path
    static let runnable = NetworkNamespace.available || NetworkNamespace.required

    /// Runs a gateway and `paced_peer.py mode` in a namespace of their own; `PID` among the
    /// arguments stands for the gateway's process id.
    static func run(_ mode: String, _ arguments: String...) throws -> [String: Any] {
        guard NetworkNamespace.available else {
            throw FixtureError("CI=true, and this test cannot run: it needs root and `ip netns add` (iproute2, which cluster/setup.sh installs)")
        }
        let namespace = try NetworkNamespace.makeSmallBuffered()
        defer { NetworkNamespace.delete(namespace) }
        let directory = try TemporaryDirectory.make(prefix: "portcullis-paced")
        try """
        listen: 127.0.0.1:8080
        admin_listen: 127.0.0.1:8081
        event_loops: 1
        access_log: false
        limits:
          response_write_timeout: 3s
          request_body_min_rate: 10
          request_body_grace: 1s
        routes:
          - {name: paced, path_prefix: /paced, upstream: {targets: [127.0.0.1:9090]}}
          - {name: many, path_prefix: /many, upstream: {targets: [127.0.0.1:9090]}}
          - {name: ws, path_prefix: /ws, websocket: true, upstream: {targets: [127.0.0.1:9090]}}
        """.write(toFile: directory + "/gateway.yaml", atomically: true, encoding: .utf8)
        let gateway = try ManagedProcess(executable: "/usr/sbin/ip", arguments: [
            "netns", "exec", namespace, PortcullisBinary.path, "gateway", "--config", directory + "/gateway.yaml",
        ], logFile: directory + "/gateway.log")
        defer { gateway.signal(SIGKILL) }
        let arguments = arguments.map { $0 == "PID" ? String(gateway.pid) : $0 }
        let result = try runCommand("/usr/sbin/ip", ["netns", "exec", namespace, "python3", script, mode, "8080", "9090"] + arguments)
        guard let line = result.stdout.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw FixtureError("paced_peer.py \(mode) printed no result: \(result.stdout) \(result.stderr)")
        }
        return object
    }

    @Test("a client pacing a body of 1-byte chunks to an upstream that stopped reading: the chunks that wait are joined, not one write each",
          .enabled(if: runnable))
    func pacedRequestBodyIsJoined() throws {
        // 3 000 chunks over about 2 s; the upstream reads nothing for 4 s.
        let result = try Self.run("body", "3000", "0.5", "4")
        let upstream = try #require(result["upstream"] as? [String: Any])
        #expect(upstream["bytes"] as? Int == 3000)
        // The build before: 3 000 chunks, one per write. Now only what the kernel's 4 KiB buffers
        // took before the upstream stopped went one by one (about 450); the rest was joined.
        let chunks = try #require(upstream["chunks"] as? Int)
        #expect(chunks < 1000, "the upstream's body came in \(chunks) chunks")
    }

    @Test("over HTTP/2, 1-byte DATA frames paced on 10 streams to upstreams that stopped reading wait joined on every stream",
          .enabled(if: runnable))
    func pacedHTTP2FramesAreJoined() throws {
        // Each stream's request goes on an HTTP/1.1 upstream connection of its own.
        let result = try Self.run("h2-body", "10", "500", "2", "4")
        #expect(result["statuses"] as? [Int] == Array(repeating: 200, count: 10))
        let chunks = try #require(result["chunks"] as? [Int])
        #expect(chunks.count == 10)
        // The build before: 499 to 500 chunks a stream (one per frame).
        #expect(chunks.allSatisfy { $0 < 300 }, "chunks per stream: \(chunks)")
    }

    @Test("an upstream's 20 000 one-byte chunks to an HTTP/1.1 client that reads nothing for 1.5 s reach it joined and intact",
          .enabled(if: runnable))
    func responseChunksToASlowClientAreJoined() throws {
        let result = try Self.run("response", "20000", "1.5")
        #expect(result["status"] as? Int == 200)
        #expect(result["intact"] as? Bool == true)
        // The build before: 20 000 chunks, each a write that waited.
        let chunks = try #require(result["chunks"] as? Int)
        #expect(chunks < 2000, "the response came in \(chunks) chunks")
    }

    @Test("an HTTP/1.1 client that never reads a response of 1-byte chunks is cut after limits.response_write_timeout, though its held writes never fill the channel",
          .enabled(if: runnable))
    func heldResponseCountsTowardTheWriteTimeout() throws {
        // Joined, the response waits as 8 KiB held behind one small write: below the channel's
        // high-water mark, so the deadline must run on the held write (3 s here).
        let result = try Self.run("unread", "200000", "10")
        let after = try #require(result["cut_after"] as? Double, "the upstream connection was never closed")
        #expect(after >= 2.5 && after < 7, "cut after \(after) s")
    }

    @Test("a WebSocket client pacing a frame byte by byte to an upstream that stopped reading costs the gateway no memory per byte",
          .enabled(if: runnable))
    func pacedWebSocketBytesAreJoined() throws {
        // 8 000 bytes: what the kernel's buffers do not take stays below the 8 KiB that stops
        // the gateway reading the client, so the client paces them all within the stall.
        let result = try Self.run("ws", "8000", "0.05", "6", "PID")
        #expect(result["status"] as? Int == 101)
        #expect(result["upstream_read_late"] as? Bool == true, "the pacing outlasted the upstream's stall: \(result)")
        #expect(result["intact"] as? Bool == true)
        // The build before grew by about 600 KiB (8 000 writes of one byte waiting); now by tens of KiB.
        let grew = try #require(result["grew_kib"] as? Int)
        #expect(grew < 300, "the gateway grew by \(grew) KiB")
    }
}
