/// Waiting for something a test caused to show up elsewhere (another process, Redis, a metric).
public enum Poll {
    /// Checks `condition` every 20 ms until it holds (true) or `timeout` passes (false).
    /// Errors thrown by `condition` count as "not yet".
    public static func until(timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
