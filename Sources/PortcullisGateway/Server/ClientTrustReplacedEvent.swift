/// Fired into a connection's pipeline when a reload replaced the client trust it opened under,
/// or stopped trusting the proxy it comes from to name the client (`ListenerSetup`): an HTTP/1.1
/// connection closes after the response in progress (at once when idle); an HTTP/2 connection
/// sends GOAWAY and closes when its open streams are done. A WebSocket tunnel is left to
/// `LiveSessions`, which ends it only when it was admitted on the strength of the certificate
/// (a tunnel carries frames, not requests: a proxy names no client on it after the upgrade).
struct ClientTrustReplacedEvent: Sendable {}
