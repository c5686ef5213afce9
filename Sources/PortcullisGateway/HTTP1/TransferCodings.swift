/// The transfer codings a message's `Transfer-Encoding` fields name (RFC 9112 §6.1), gathered as
/// the fields go by: what both the request checks (`RequestHeadFacts`) and the upstream response
/// parser decide the framing from. The gateway decodes `chunked` only.
struct TransferCodings {
    /// A `Transfer-Encoding` field was seen.
    private(set) var present = false
    /// Codings named over all the fields (empty list elements skipped, RFC 9110 §5.6.1.2).
    private(set) var count = 0
    /// Some coding is not `chunked`.
    private(set) var otherThanChunked = false
    /// The last field's last coding is `chunked` (false for a last field naming none).
    private(set) var lastFieldEndsChunked = false

    /// Adds one `Transfer-Encoding` field's value.
    mutating func add(_ fieldValue: some BidirectionalCollection<UInt8>) {
        present = true
        lastFieldEndsChunked = false
        HeaderList.forEachElement(fieldValue) { coding in
            count += 1
            lastFieldEndsChunked = HeaderNameSet.equalsIgnoringASCIICase(coding, "chunked".utf8)
            if !lastFieldEndsChunked { otherThanChunked = true }
        }
    }

    /// Exactly one coding over all the fields, and it is `chunked`.
    var isOneChunked: Bool { present && count == 1 && !otherThanChunked }
}
