import NIOCore

/// One part of a request to an upstream.
enum UpstreamRequestPart {
    case head(UpstreamRequestHead)
    case body(ByteBuffer)
    case end
}
