/// The release this binary was built from; reported by `--version`, node registration and metrics.
public enum PortcullisVersion {
    public static let current = "0.1.0"
}
