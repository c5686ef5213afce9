import PortcullisJOSE

/// What a revocation call answers about its change's propagation: read, or not known.
enum PropagationRead {
    case read(Propagation)
    /// It could not be read (Redis unreachable after the write); the change is durable.
    case unknown(any Error)

    var json: JSONValue {
        switch self {
        case .read(let propagation): propagation.json
        case .unknown(let error): ["unknown": .string("the change is durable, but its propagation could not be read: \(error)")]
        }
    }

    /// 202 rather than the write's own status: asked to wait and not everywhere yet, or not known.
    func accepted(wait: Duration?) -> Bool {
        switch self {
        case .read(let propagation): wait != nil && !propagation.complete
        case .unknown: true
        }
    }
}
