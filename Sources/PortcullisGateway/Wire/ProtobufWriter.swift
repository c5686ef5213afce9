/// Protocol Buffers' binary encoding (https://protobuf.dev/programming-guides/encoding/), the
/// writing half only, for the OTLP export (`OTLPTraceRequest`). Hand-written because the gateway
/// writes one fixed message shape: swift-protobuf's generated types would need `protoc` in the
/// build for a few dozen lines of varints and length prefixes, and swift-otel keeps its generated
/// OTLP types internal.
///
/// Nested messages are written in place: `message(_:_:)` reserves the longest length prefix a
/// message can need, writes the body, then writes the real length and moves the body down over
/// the unused prefix bytes — one copy per nested message, no intermediate buffers.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    init(reservingCapacity capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    private enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
    }

    private mutating func tag(_ field: UInt64, _ type: WireType) {
        varint(field << 3 | type.rawValue)
    }

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// An `int64`, `uint32`, enum or `bool` field (negative numbers take ten bytes, as `int64` does).
    mutating func varintField(_ field: UInt64, _ value: UInt64) {
        tag(field, .varint)
        varint(value)
    }

    mutating func int64Field(_ field: UInt64, _ value: Int64) {
        varintField(field, UInt64(bitPattern: value))
    }

    mutating func fixed64Field(_ field: UInt64, _ value: UInt64) {
        tag(field, .fixed64)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A `double` field: its IEEE 754 bits, little-endian.
    mutating func doubleField(_ field: UInt64, _ value: Double) {
        fixed64Field(field, value.bitPattern)
    }

    mutating func bytesField(_ field: UInt64, _ value: some Collection<UInt8>) {
        tag(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// A `string` field: its UTF-8 (a Swift string is always valid UTF-8, as protobuf requires).
    mutating func stringField(_ field: UInt64, _ value: String) {
        var value = value
        value.withUTF8 { bytesField(field, $0) }
    }

    /// The longest length prefix: a nested message here is far below 2^35 bytes.
    private static let reservedPrefix = 5

    /// A nested message field, its body written by `body`.
    mutating func message(_ field: UInt64, _ body: (inout ProtobufWriter) -> Void) {
        tag(field, .lengthDelimited)
        let prefixAt = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: Self.reservedPrefix))
        let bodyAt = bytes.count
        body(&self)
        let length = bytes.count - bodyAt
        var prefix = ProtobufWriter()
        prefix.varint(UInt64(length))
        bytes.replaceSubrange(prefixAt..<bodyAt, with: prefix.bytes)
    }
}
