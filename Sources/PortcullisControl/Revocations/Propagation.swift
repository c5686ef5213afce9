import Foundation
import PortcullisCluster
import PortcullisJOSE

/// How far one revocation change has spread: which live gateway nodes applied it and how long
/// each took (from the durable write in Redis to the node applying it, as the node measured it).
struct Propagation: Sendable {
    struct NodeState: Sendable {
        var id: String
        var appliedSequence: Int64
        var applied: Bool
        /// From the node's acknowledgement; nil when the node applied it through a catch-up or
        /// resync rather than the live event (then it did not measure).
        var latencyMicros: Int64?
    }

    var sequence: Int64
    var nodes: [NodeState]
    var waitedMillis: Int64?

    var complete: Bool { nodes.allSatisfy(\.applied) }
    var laggards: [String] { nodes.filter { !$0.applied }.map(\.id) }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "sequence": .integer(sequence),
            "complete": .bool(complete),
            "live_nodes": .integer(Int64(nodes.count)),
            "applied": .integer(Int64(nodes.filter(\.applied).count)),
            "laggards": .array(laggards.map(JSONValue.string)),
            "nodes": .array(nodes.map { node in
                [
                    "id": .string(node.id),
                    "applied": .bool(node.applied),
                    "applied_sequence": .integer(node.appliedSequence),
                    "latency_ms": node.latencyMicros.map { .number(Double($0) / 1000) } ?? .null,
                ]
            }),
        ]
        if let waitedMillis { object["waited_ms"] = .integer(waitedMillis) }
        return .object(object)
    }
}

/// Reads and waits for propagation. A node counts as having applied a change only by its own
/// signed acknowledgement (`NodeAck`) of that change's epoch: the one in its verified node record,
/// or the one it stored for the change's sequence. Acknowledgements that do not verify are
/// reported as tampering by the cluster module and never counted.
struct PropagationTracker: Sendable {
    let store: RevocationStore
    let view: ClusterView

    func current(_ event: RevocationEvent) async throws -> Propagation {
        let (_, head, nodes) = try await view.gateways()
        let acks = try await store.acknowledgements(sequence: event.sequence, epoch: event.epoch)
        var states: [Propagation.NodeState] = []
        for node in nodes {
            // Only this node process's own acknowledgements, and only for the change committed.
            var confirmed: NodeAck?
            for ack in [node.record.ack, acks[node.record.id]].compactMap({ $0 }) where ack.instance == node.record.instance {
                if await store.confirms(ack, event, head: head) { confirmed = ack; break }
            }
            let live = acks[node.record.id].flatMap { $0.instance == node.record.instance && $0.last == event.mac ? $0 : nil }
            states.append(Propagation.NodeState(id: node.record.id, appliedSequence: max(node.appliedSequence, confirmed?.sequence ?? -1),
                                                applied: confirmed != nil, latencyMicros: live?.latencyMicros))
        }
        return Propagation(sequence: event.sequence, nodes: states)
    }

    /// Polls until every live gateway applied `sequence` or `timeout` passed. Node records carry
    /// the node's latest acknowledgement, written right after it applies a change, so polling
    /// every 10 ms sees completion within a poll interval without a subscription per waiting request.
    func wait(_ event: RevocationEvent, timeout: Duration) async throws -> Propagation {
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + timeout
        var state = try await current(event)
        while !state.complete, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            state = try await current(event)
        }
        // A node's record can show the change before its per-sequence ack (with the latency) lands.
        var settle = 0
        while state.complete, state.nodes.contains(where: { $0.latencyMicros == nil }), settle < 5 {
            try await Task.sleep(for: .milliseconds(10))
            state = try await current(event)
            settle += 1
        }
        let waited = clock.now - started
        state.waitedMillis = waited.wholeMilliseconds
        return state
    }
}
