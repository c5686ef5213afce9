import NIOCore

/// The client-certificate trust a connection was opened under (`ListenerTLS.clientTrust`), kept
/// in its pipeline so that a request can tell whether a reload has replaced it since: a
/// certificate verified under trust the operator replaced no longer counts
/// (`ControlRequestContext.clientCertificate(verifiedBy:)`). Quiescing alone did not close a
/// connection whose client always kept a request pipelined, and that client went on calling the
/// admin API with a certificate of the removed CA (an attacker review). Passes everything through.
final class ConnectionTrust: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let box: ListenerTLSBox
    private let trust: [UInt8]

    init(box: ListenerTLSBox, trust: [UInt8]) {
        self.box = box
        self.trust = trust
    }

    /// Whether the listener still trusts the client certificates it trusted when the connection opened.
    var isCurrent: Bool { box.current.clientTrust == trust }
}
