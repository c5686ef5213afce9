import Logging
import PortcullisCluster
import PortcullisConfig
import PortcullisObservability
import ServiceLifecycle
import Synchronization
import UnixSignals

/// SIGHUP: re-reads the configuration file and puts in force, all or nothing, what can change
/// while running — the listeners' certificates (new connections get them, open ones keep
/// theirs unless the client certificates trusted changed: see `ListenerTLSBox`), `admin_tokens`, `admin_auth`, `max_wait` and `rate_limits`. A file that does not
/// load, a certificate that cannot be read, or a changed start-only setting (``StartOnlySettings``)
/// changes nothing; it is logged with file, line and key and counted (``ConfigReloads``).
final class ControlReloader: Service, Sendable {
    private let running: Mutex<ControlConfig>
    private let publicTLS: ListenerTLSBox?
    private let adminTLS: ListenerTLSBox?
    private let settings: ReloadableAdminSettings
    private let reloads: ConfigReloads

    /// `publicTLS` and `adminTLS` exist exactly when `running` has `tls` and `admin_tls`.
    init(running: ControlConfig, publicTLS: ListenerTLSBox?, adminTLS: ListenerTLSBox?, settings: ReloadableAdminSettings, reloads: ConfigReloads) {
        self.running = Mutex(running)
        self.publicTLS = publicTLS
        self.adminTLS = adminTLS
        self.settings = settings
        self.reloads = reloads
    }

    func run() async throws {
        // Ends with the service group's graceful shutdown (SIGTERM), which cancels the loop.
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                self.reload()
            }
        }
    }

    /// The listeners' TLS for `config`, each failure located at its key (start, `--check`, reload).
    static func listenerTLS(_ config: ControlConfig) throws -> (public: ListenerTLS?, admin: ListenerTLS?) {
        func load(_ tls: ControlTLSConfig?, key: String) throws -> ListenerTLS? {
            do {
                return try tls?.makeListenerTLS()
            } catch {
                throw ConfigError(file: config.file, line: nil, column: nil, keyPath: key, message: "\(error)")
            }
        }
        return (try load(config.tls, key: "tls"), try load(config.adminTLS, key: "admin_tls"))
    }

    private func reload() {
        let current = running.withLock { $0 }
        let config: ControlConfig
        let tls: (public: ListenerTLS?, admin: ListenerTLS?)
        do {
            config = try ControlConfig.load(file: current.file)
            if let changes = current.startOnly.changes(to: config.startOnly) { throw changes }
            if config.tls?.verifiesClientCertificatesItself != current.tls?.verifiesClientCertificatesItself {
                throw ConfigError(file: config.file, line: nil, column: nil, keyPath: "tls.client_certificates",
                                  message: "whether the public listener asks for client certificates (self-signed clients) is read at start: restart the node to apply it")
            }
            tls = try Self.listenerTLS(config)
        } catch {
            reloads.failed(file: current.file, error: error)
            return
        }
        let quiesced = (publicTLS.flatMap { box in tls.public.map { box.replace($0) } } ?? 0,
                        adminTLS.flatMap { box in tls.admin.map { box.replace($0) } } ?? 0)
        settings.replace(AdminSettings(config))
        running.withLock { $0 = config }
        reloads.succeeded(file: config.file, summary: ["admin_tokens": "\(config.adminCredentials.count)",
                                                       "connections_closed_for_client_trust": "\(quiesced.0 + quiesced.1)"])
    }
}
