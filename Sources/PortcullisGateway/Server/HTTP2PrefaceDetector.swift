import NIOCore

/// Tells HTTP/2 with prior knowledge (`h2c`) from HTTP/1.1 on a plaintext listener by the first
/// bytes, as Envoy's `AUTO` codec does: a connection whose first 24 bytes are the HTTP/2
/// connection preface (RFC 9113 §3.4) speaks HTTP/2, any other speaks HTTP/1.1 — no HTTP/1.1
/// request can start with `PRI * HTTP/2.0`. The decision is made at the first byte that differs
/// from the preface, or once all 24 match; `configure` then builds the rest of the pipeline after
/// this handler, the bytes read so far are passed on, and the handler removes itself.
///
/// Written here because NIO has no such detector (its HTTP/2 helpers negotiate through ALPN or
/// the HTTP/1.1 `Upgrade` dance). It only compares a prefix; `HTTP2PrefaceDetectorTests` cover
/// split reads, early closes and both outcomes. Event-loop confined.
final class HTTP2PrefaceDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Spoken: Equatable {
        case http1
        case http2
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let configure: (Spoken, ChannelHandlerContext) throws -> Void
    private var buffered: ByteBuffer?
    private var decided = false

    /// `configure` adds the chosen protocol's handlers after this one (`context` is this handler's).
    init(configure: @escaping (Spoken, ChannelHandlerContext) throws -> Void) {
        self.configure = configure
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !decided else {
            context.fireChannelRead(wrapInboundOut(bytes))
            return
        }
        if var held = buffered {
            held.writeBuffer(&bytes)
            buffered = held
        } else {
            buffered = bytes
        }
        guard let held = buffered, let decision = Self.decide(held.readableBytesView) else { return }
        decided = true
        do {
            try configure(decision, context)
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        buffered = nil
        context.fireChannelRead(wrapInboundOut(held))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Until the protocol is known nothing after this handler can use a read-complete.
        if decided { context.fireChannelReadComplete() }
    }

    /// The protocol the bytes so far show, nil while they are a proper prefix of the preface.
    static func decide(_ bytes: some Collection<UInt8>) -> Spoken? {
        var index = 0
        for byte in bytes {
            if index == preface.count { break }
            if byte != preface[index] { return .http1 }
            index += 1
        }
        return index == preface.count ? .http2 : nil
    }
}
