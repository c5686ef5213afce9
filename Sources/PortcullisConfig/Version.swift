/// The release this binary was built from; reported by `--version`, node registration and metrics.
public enum PortcullisVersion {
    /// This release's version number.
    public static let current = "0.1.0"
    /// The source revision, as `portcullis_build_info{revision}` reports it. SwiftPM offers no
    /// build-time value short of a build plugin, so a build from source says `unknown`; the
    /// version above is what identifies a release.
    public static let revision = "unknown"
}
