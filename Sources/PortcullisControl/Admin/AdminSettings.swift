import PortcullisCluster
import Synchronization

/// The admin API's settings a SIGHUP reload replaces: who may call it (`admin_tokens`,
/// `admin_auth`), the longest revocation wait (`max_wait`) and the rate-limit policies it
/// describes (`rate_limits`).
struct AdminSettings: Sendable {
    let authenticator: AdminAuthenticator
    let mode: AdminAuthMode
    let maxWait: Duration
    let rateLimitPolicies: [RateLimitPolicy]

    init(_ config: ControlConfig) {
        authenticator = AdminAuthenticator(credentials: config.adminCredentials)
        mode = config.adminAuth
        maxWait = config.maxWait
        rateLimitPolicies = config.rateLimitPolicies
    }
}

/// The admin settings in force; read once per admin call (the admin API is no hot path).
final class ReloadableAdminSettings: Sendable {
    private let settings: Mutex<AdminSettings>

    init(_ settings: AdminSettings) {
        self.settings = Mutex(settings)
    }

    var current: AdminSettings { settings.withLock { $0 } }

    func replace(_ new: AdminSettings) {
        settings.withLock { $0 = new }
    }
}
