import Logging
import ServiceLifecycle
import UnixSignals

/// SIGHUP: re-reads the listeners' certificate and key files; new connections get them, open ones
/// keep theirs. A file that cannot be read keeps the old certificate and is logged.
struct CertificateReloader: Service {
    let listeners: [(config: ControlTLSConfig?, box: TLSContextBox?)]
    let logger: Logger

    func run() async throws {
        let reloadable = listeners.compactMap { listener in listener.config.flatMap { config in listener.box.map { (config, $0) } } }
        guard !reloadable.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        // Ends with the service group's graceful shutdown (SIGTERM), which cancels the loop.
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                for (config, box) in reloadable {
                    do {
                        box.replace(try config.makeListenerTLS())
                        logger.info("TLS certificate reloaded", metadata: ["certificate_chain": "\(config.certificateChain)"])
                    } catch {
                        logger.error("TLS certificate not reloaded; keeping the old one", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }
}
