import NIOCore

/// The client-certificate trust a connection was opened under (the generation of
/// `ListenerTLSBox`), kept in its pipeline so that a request can tell whether a reload has
/// replaced it since: a
/// certificate verified under trust the operator replaced no longer counts
/// (`ControlRequestContext.clientCertificate(verifiedBy:)`). Quiescing alone does not close a
/// connection whose client always keeps a request pipelined, and that client could go on calling
/// the admin API with a certificate of the removed CA. Passes everything through.
final class ConnectionTrust: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let box: ListenerTLSBox
    private let generation: Int

    init(box: ListenerTLSBox, generation: Int) {
        self.box = box
        self.generation = generation
    }

    /// Whether no reload has changed the listener's client trust since the connection opened
    /// (one atomic load: no lock on the request path).
    var isCurrent: Bool { box.generation == generation }
}
