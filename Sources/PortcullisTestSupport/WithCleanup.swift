/// Runs `body` with `resource`, then `cleanup` — also when `body` throws — so no fixture (a
/// process, a folder, a cluster) outlives the test that made it. (`defer` cannot await.)
public func withCleanup<Resource>(_ resource: Resource, _ cleanup: (Resource) async -> Void,
                                  _ body: (Resource) async throws -> Void) async throws {
    do {
        try await body(resource)
    } catch {
        await cleanup(resource)
        throw error
    }
    await cleanup(resource)
}
