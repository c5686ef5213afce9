import Instrumentation
import NIOHTTP1

/// The W3C Trace Context fields of a request (`traceparent`, `tracestate`), and nothing else of
/// it: the carrier the tracer reads. Keeping the rest of the request out matters — a tracer that
/// cannot parse a carrier may log it, and the request's fields hold its bearer token.
struct TraceHeaders: Sendable, CustomStringConvertible {
    let traceparent: String
    let tracestate: String?

    /// The request's trace context fields, given its first `traceparent` (found in the pass over
    /// its fields the request path makes anyway); nil without a `traceparent` of the W3C shape
    /// (`00-<32 hex>-<16 hex>-<2 hex>`), which then starts a new trace as if absent.
    init?(traceparent: String?, headers: HTTPHeaders) {
        guard let traceparent, Self.isWellFormed(traceparent) else { return nil }
        self.traceparent = traceparent
        self.tracestate = headers.first(name: "tracestate")
    }

    var description: String { "traceparent: \(traceparent)" }

    /// Version 00's layout, hex digits in place; other versions are refused rather than guessed at.
    static func isWellFormed(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 55, bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0"),
              bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-") else { return false }
        for (index, byte) in bytes.enumerated() where index != 2 && index != 35 && index != 52 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): continue
            default: return false
            }
        }
        return true
    }

    /// Reads a `TraceHeaders` for the tracer's propagator.
    struct Extractor: Instrumentation.Extractor {
        func extract(key: String, from carrier: TraceHeaders) -> String? {
            switch key {
            case "traceparent": carrier.traceparent
            case "tracestate": carrier.tracestate
            default: nil
            }
        }
    }
}

/// Writes trace context fields into a request head on its way upstream, replacing the client's.
struct UpstreamFieldsInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(name: String, value: String)]) {
        carrier.removeAll { HeaderNameSet.equalsIgnoringASCIICase($0.name.utf8, key.utf8) }
        carrier.append((key, value))
    }
}

/// The same for an HTTP/2 upstream's head.
struct UpstreamHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HTTPHeaders) {
        carrier.replaceOrAdd(name: key, value: value)
    }
}
