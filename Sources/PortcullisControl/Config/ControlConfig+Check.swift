import PortcullisConfig

extension ControlConfig {
    /// What `--check` verifies beyond parsing, without creating or connecting anything: the
    /// authorization server's key-encryption key loads (or, absent, can be created in its folder).
    public func checkStartFiles() throws {
        if let authorizationServer {
            try keyEncryptionKeyError { () throws(KeyEncryptionKey.LoadError) in
                try KeyEncryptionKey.check(path: authorizationServer.keyEncryptionKeyFile)
            }
        }
    }

    /// `body`'s key-encryption-key error as a configuration error naming the file and key (exit 2,
    /// as for any file the configuration names that cannot be used).
    func keyEncryptionKeyError<T>(_ body: () throws(KeyEncryptionKey.LoadError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw ConfigError(file: file, line: nil, column: nil, keyPath: "authorization_server.key_encryption_key_file", message: error.description)
        }
    }
}
