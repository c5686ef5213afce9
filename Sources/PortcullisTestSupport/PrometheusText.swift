/// Reading samples out of a `/metrics` page (Prometheus text format).
public enum PrometheusText {
    /// The value of the sample whose series (name and labels, exactly as written) is `series`;
    /// nil when the page has no such sample.
    public static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }
}
