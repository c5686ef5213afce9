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

extension AdminSettings {
    /// Whether `admin_auth` admits a caller with this token (nil: none or a wrong one) and this
    /// verified client-certificate subject. The admin API and the console's sign-in both ask here.
    func admits(token: AdminCredential?, subject: String?) -> Bool {
        switch mode {
        case .token: token != nil
        case .certificate: subject != nil
        case .tokenAndCertificate: token != nil && subject != nil
        case .tokenOrCertificate: token != nil || subject != nil
        }
    }
}

/// The admin settings in force; read once per admin call (the admin API is no hot path).
typealias ReloadableAdminSettings = Reloadable<AdminSettings>
