import Prometheus

/// The text `/metrics` serves: the registry's exposition with every histogram bound (`le`)
/// spelled as Prometheus' own clients spell it.
///
/// swift-prometheus writes bounds with Swift's `description` (`le="1.0"`, `le="10.0"`) or, for
/// `Duration` histograms, as seconds with a fraction (`le="0.00025"`, `le="5.0"`). Prometheus 2.x
/// stores label values as they come, so a query for `le="1"` — the spelling of the Go client and
/// of most recording rules and dashboards — would match nothing (3.x normalises on ingestion).
/// Each bound is rewritten to Go's `strconv.FormatFloat(v, 'g', -1, 64)`: `1`, `10`, `0.00025`,
/// `5e-05`, `+Inf`.
public enum Exposition {
    /// Emits `registry` with canonical `le` values.
    public static func render(_ registry: PrometheusCollectorRegistry) -> [UInt8] {
        canonicalizingBuckets(registry.emitToBuffer())
    }

    /// `text` with the value of every `le` label in canonical form, the rest copied as it is.
    public static func canonicalizingBuckets(_ text: [UInt8]) -> [UInt8] {
        let marker = Array(#"le=""#.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = 0
        while index < text.count {
            // A label starts after `{` or `,`. Inside a label value a quote is escaped (`\"`), so
            // `le="` never appears there: only real `le` labels are rewritten.
            let atLabel = index + marker.count <= text.count && (index > 0 && (text[index - 1] == UInt8(ascii: "{") || text[index - 1] == UInt8(ascii: ",")))
                && text[index..<index + marker.count].elementsEqual(marker)
            guard atLabel, let close = text[(index + marker.count)...].firstIndex(of: UInt8(ascii: "\"")) else {
                out.append(text[index])
                index += 1
                continue
            }
            let value = String(decoding: text[(index + marker.count)..<close], as: UTF8.self)
            out.append(contentsOf: marker)
            out.append(contentsOf: canonicalBound(value).utf8)
            out.append(UInt8(ascii: "\""))
            index = close + 1
        }
        return out
    }

    /// One bound in Go's shortest `'g'` form; text that is not a number comes back unchanged.
    public static func canonicalBound(_ text: String) -> String {
        guard let value = Double(text), value.isFinite else { return text }
        // Integral bounds in full, as Go's shortest 'g' form writes them below 1e6 (from 1e6 on it
        // writes `1e+06`); every bound here is below 1e6.
        if value == value.rounded(), let integer = Int64(exactly: value) {
            return String(integer)
        }
        // Otherwise Swift's shortest round-trip digits are Go's: `0.00025`, `2.5`, `5e-05`.
        return value.description
    }
}
