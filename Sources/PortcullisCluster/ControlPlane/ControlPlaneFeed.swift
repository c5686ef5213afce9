import PortcullisRedis

/// What the cluster tells a control plane over pub/sub, read from the channels this module owns
/// and decoded here, so the control plane handles typed events and names no channel:
/// - gateways' signed revocation acknowledgements (`NodeAck`, for the propagation histogram);
/// - their requests to refetch an issuer's key set (`KeyRefetchRequest`);
/// - key-set announcements (a peer control plane rotated the signing key).
///
/// Anyone holding a gateway's Redis credential may publish on these channels. So an
/// acknowledgement counts only with a valid MAC (anything else is reported to the tampering
/// alarm), and a request or announcement over 4 KiB is dropped: an honest one names a kid and
/// an issuer.
public struct ControlPlaneFeed: Sendable {
    /// One decoded message, or the news that some were dropped.
    public enum Event: Sendable, Equatable {
        /// A gateway applied a revocation; `latencyMicros` is nil when a catch-up applied it.
        case acknowledged(NodeAck)
        /// A gateway met a kid the issuer's set lacks.
        case refetchRequested(KeyRefetchRequest)
        /// An issuer's key-set record changed (only a trigger: the record carries its own MAC).
        case keySetAnnounced(issuer: String)
        /// Messages were dropped while the reader was behind: state they would have announced
        /// must be read from its keys.
        case overflowed
    }

    /// Messages held while the reader works through earlier ones; beyond, new ones are dropped
    /// (an acknowledgement's latency figure, a refetch request a gateway repeats, an
    /// announcement whose ring is then reloaded). Unbounded, a flood of acknowledgements any
    /// gateway's credential may publish would grow the control plane's memory as fast as the
    /// flood came. None of these messages is over 4 KiB when honest.
    public static let buffer = RedisEventBuffer(events: 1024, bytes: 16 << 20)

    /// The longest refetch request or announcement read; longer ones are a flood, not a message.
    static let maxMessageBytes = 4096

    private let keys: ClusterKeys
    private let mac: ClusterMAC
    private let alarm: TamperingAlarm

    public init(keys: ClusterKeys, mac: ClusterMAC, alarm: TamperingAlarm) {
        self.keys = keys
        self.mac = mac
        self.alarm = alarm
    }

    /// Subscribes with `subscriber` and hands each event to `handle`, in order, until the
    /// subscriber is closed.
    public func run(_ subscriber: RedisSubscriber, _ handle: (Event) async -> Void) async {
        let stream = subscriber.events(channels: [keys.keySetRefetchChannel, keys.ackChannel, keys.keySetChannel], patterns: [],
                                       buffer: Self.buffer)
        for await event in stream {
            if subscriber.takeOverflow() { await handle(.overflowed) }
            guard case .message(let channel, let payload) = event, let decoded = decode(channel: channel, payload: payload) else { continue }
            await handle(decoded)
        }
    }

    /// The event a message on one of the feed's channels carries; nil for one to drop.
    func decode(channel: String, payload: [UInt8]) -> Event? {
        if channel == keys.ackChannel {
            do {
                guard payload.count <= NodeAck.maxBytes else { throw NodeAck.DecodeError.malformed }
                return .acknowledged(try NodeAck.decode(String(decoding: payload, as: UTF8.self), mac: mac))
            } catch {
                alarm.report(key: keys.ackChannel, "\(error)")
                return nil
            }
        }
        guard payload.count <= Self.maxMessageBytes else { return nil }
        if channel == keys.keySetRefetchChannel {
            return KeyRefetchRequest(payload).map { .refetchRequested($0) }
        }
        if channel == keys.keySetChannel {
            return KeySetAnnouncement(payload).map { .keySetAnnounced(issuer: $0.issuer) }
        }
        return nil
    }
}
