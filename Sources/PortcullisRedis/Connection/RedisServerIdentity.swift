import NIOCore
import NIOSSL
import NIOTLS
import X509

/// Holds a TLS connection to Redis until the server has proved who it is, so that nothing — `AUTH`
/// above all — is sent before: the handshake (NIOSSL checks the chain against the CA and the host
/// or IP connected to), then, when `requiredName` is set (`redis_tls.server_name`), a DNS name in
/// the certificate equal to it.
///
/// NIOSSL alone takes a certificate whose IP entry matches the address connected to, whatever name
/// it was given, and under Sentinel that address is whatever a Sentinel names: any certificate
/// the CA signed for the Sentinel's own host — the Sentinel's — would pass as the primary's and be
/// sent the node's Redis password. A name only the Redis servers' certificates carry prevents it.
final class RedisServerIdentity: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let requiredName: String?
    private let forbiddenName: String?
    private let timeout: TimeAmount
    private let address: String
    private let promise: EventLoopPromise<Void>
    private var deadline: Scheduled<Void>?
    private var settled = false

    /// Completes when the server is verified; fails (and the channel closes) otherwise.
    var verified: EventLoopFuture<Void> { promise.futureResult }

    /// - Parameters:
    ///   - requiredName: a DNS name the certificate must list (a data node's `server_name`).
    ///   - forbiddenName: a DNS name it must not list (a Sentinel's, whose certificate naming
    ///     `server_name` would let it pass as the primary).
    init(requiredName: String?, forbiddenName: String? = nil, timeout: TimeAmount, address: String, eventLoop: any EventLoop) {
        self.requiredName = requiredName
        self.forbiddenName = forbiddenName
        self.timeout = timeout
        self.address = address
        promise = eventLoop.makePromise()
    }

    /// The handshake's own deadline, from the moment TCP is connected (the connect has its own).
    func channelActive(context: ChannelHandlerContext) {
        let address = self.address, timeout = self.timeout
        let channel = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            handler.value.settle(.failure(RedisError.tls("\(address): no TLS handshake within \(timeout) (is the server speaking TLS?)")))
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    /// Completes the promise once; later outcomes (the channel closing after success) are ignored.
    private func settle(_ result: Result<Void, RedisError>) {
        guard !settled else { return }
        settled = true
        deadline?.cancel()
        promise.completeWith(result.mapError { $0 as any Error })
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
            let der = (try? certificate?.toDERBytes()) ?? []
            if let requiredName, !Self.certificate(der, isFor: requiredName) {
                settle(.failure(RedisError.tls("\(address): the server's certificate does not name \(requiredName) (redis_tls.server_name) among its DNS names")))
                context.close(promise: nil)
                return
            }
            if let forbiddenName, Self.certificate(der, isFor: forbiddenName) {
                settle(.failure(RedisError.tls("\(address): this Sentinel's certificate names \(forbiddenName) (redis_tls.server_name), so it could pass as the primary; give that name to the Redis servers' certificates only")))
                context.close(promise: nil)
                return
            }
            settle(.success(()))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        settle(.failure(RedisError.tls("\(address): TLS handshake failed: \(error)")))
        context.fireErrorCaught(error)
    }

    /// A channel whose connect failed never becomes active: its promise fails here, not never.
    func handlerRemoved(context: ChannelHandlerContext) {
        settle(.failure(RedisError.tls("\(address): the connection closed before the TLS handshake")))
    }

    func channelInactive(context: ChannelHandlerContext) {
        settle(.failure(RedisError.tls("\(address): the connection closed during the TLS handshake")))
        context.fireChannelInactive()
    }

    /// Whether the DER certificate lists `name` as a DNS name: equal ignoring ASCII case and a
    /// trailing dot, or matched by a wildcard for its whole left-most label (`*.redis.internal`
    /// names `a.redis.internal`, not `redis.internal` or `a.b.redis.internal`). IP entries and
    /// the subject's common name do not count.
    static func certificate(_ der: [UInt8], isFor name: String) -> Bool {
        guard let certificate = try? Certificate(derEncoded: der),
              let names = try? certificate.extensions.subjectAlternativeNames else { return false }
        let wanted = normalised(name)
        guard !wanted.isEmpty else { return false }
        for case .dnsName(let dnsName) in names {
            let listed = normalised(dnsName)
            if listed == wanted { return true }
            // A wildcard covers one label under a name of two labels at least (`*.internal` none).
            if listed.hasPrefix("*."), let dot = wanted.firstIndex(of: "."), dot != wanted.startIndex,
               wanted[wanted.index(after: dot)...] == listed.dropFirst(2), listed.dropFirst(2).contains(".") {
                return true
            }
        }
        return false
    }

    private static func normalised(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }
}
