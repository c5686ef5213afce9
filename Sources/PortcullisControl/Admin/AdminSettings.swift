import PortcullisCluster

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
typealias ReloadableAdminSettings = Reloadable<AdminSettings>
