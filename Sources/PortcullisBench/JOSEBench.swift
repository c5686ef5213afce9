import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PortcullisJOSE

/// `portcullis-bench jose`: JWT verifications per second on one core, uncached per algorithm and
/// as cache hits, next to OpenSSL's signature-only `openssl speed` figures measured in the same run.
struct JOSEBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jose",
        abstract: "JWT validation: uncached verifications/s per algorithm and cache-hit cost (one thread)."
    )

    @Option(help: "Measured runs per case; the median is reported.")
    var runs = 5

    @Option(help: "Seconds per run.")
    var seconds = 1.0

    @Flag(help: "Skip the OpenSSL peer measurement.")
    var noPeer = false

    @Option(help: "Comma-separated algorithms to measure uncached (default: RS256,PS256,ES256,EdDSA,HS256).")
    var only: String?

    @Flag(help: "Skip the cache-hit measurement (for profiling the uncached path).")
    var noCacheHit = false

    func run() async throws {
        #if DEBUG
        print("warning: debug build; run with -c release for meaningful figures")
        #endif
        let now = Int64(Date().timeIntervalSince1970)
        let algorithms: [JWSAlgorithm] = [.RS256, .PS256, .ES256, .EdDSA, .HS256]
        var signers: [JWTSigner] = []
        var hmacKeys: [IssuerConfig.HMACKey] = []
        for algorithm in algorithms {
            let key = try SigningKey.generate(algorithm)
            let kid = "bench-" + algorithm.rawValue.lowercased()
            signers.append(JWTSigner(key: key, keyID: kid))
            if case .hmac(let secret, _) = key {
                hmacKeys.append(.init(keyID: kid, secret: secret.withUnsafeBytes { Array($0) }, algorithm: algorithm))
            }
        }
        let issuer = IssuerConfig(name: "bench", issuer: "https://issuer.example", audiences: ["api://orders"],
                                  algorithms: algorithms, keySource: .none, hmacKeys: hmacKeys)
        let jwks = JSONValue.array(signers.filter { $0.key.algorithm != .HS256 }.map { $0.key.publicJWK(keyID: $0.keyID) })
        let keySet = try JWKSet.parse(Array(JSONWriter.serialize(["keys": jwks]).utf8), issuer: issuer, logger: nil)
        let store = KeySetStore()
        store.replace(issuerName: "bench", keySet: keySet, version: nil)
        let claims: JSONValue = [
            "iss": "https://issuer.example", "aud": "api://orders", "sub": "user-4711", "client_id": "orders-web",
            "exp": .integer(now + 3600), "iat": .integer(now), "nbf": .integer(now), "jti": "8f14e45f-ceea-467a-9575-8a1f2b5c7a01",
            "scope": "orders:read orders:write profile", "tenant": "acme", "roles": ["buyer", "approver"],
        ]
        let uncached = JWTVerifier(issuers: [issuer], keys: store, cache: nil)
        print("JWT validation, one thread, median of \(runs) runs of \(seconds) CPU-seconds (rates per CPU-second)")
        print("alg".padding(toLength: 8, withPad: " ", startingAt: 0) + "   bytes      verify/s    µs/verify")
        var results: [JWSAlgorithm: Double] = [:]
        let selected = only.map { Set($0.split(separator: ",").map(String.init)) }
        for signer in signers where selected?.contains(signer.key.algorithm.rawValue) ?? true {
            let token = Array(try signer.sign(claims: claims).utf8)
            guard case .success = uncached.verify(token) else { throw ValidationError("\(signer.key.algorithm) token did not verify") }
            let perSecond = median((0..<runs).map { _ in measure(seconds: seconds) { _ = uncached.verify(token) } })
            results[signer.key.algorithm] = perSecond
            print(signer.key.algorithm.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                + String(format: " %7d %13.0f %12.2f", token.count, perSecond, 1e6 / perSecond))
        }

        guard !noCacheHit else { return }
        let cache = VerifiedTokenCache(capacity: 100_000)
        let cached = JWTVerifier(issuers: [issuer], keys: store, cache: cache)
        let token = Array(try signers[0].sign(claims: claims).utf8)
        _ = cached.verify(token)
        let hitsPerSecond = median((0..<runs).map { _ in measure(seconds: seconds) { _ = cached.verify(token) } })
        print(String(format: "cache hit (RS256 token, %d bytes): %.0f/s = %.3f µs", token.count, hitsPerSecond, 1e6 / hitsPerSecond))
        print("cache: \(cache.hits) hits, \(cache.misses) misses")

        guard !noPeer else { return }
        let peer = opensslVerifyRates()
        if peer.isEmpty {
            print("peer: `openssl speed` not available")
            return
        }
        print("peer: `openssl speed -mr -seconds 1` (system OpenSSL), signature verification only (no parsing, no claims):")
        for (name, algorithm) in [("rsa2048", JWSAlgorithm.RS256), ("ecdsap256", .ES256), ("ed25519", .EdDSA)] {
            guard let rate = peer[name], let ours = results[algorithm] else { continue }
            print("  " + name.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: " %10.0f verify/s; Portcullis full ", rate) + algorithm.rawValue
                + String(format: " verification = %.2fx", ours / rate))
        }
        // HAProxy 2.6 re-verifies every request: ~31 µs for RS256 (docs/benchmarks.md, shared probes).
        if let rs = results[.RS256] {
            print(String(format: "  HAProxy 2.6 RS256 per request ~31 µs (earlier probe); Portcullis uncached %.1f µs, cache hit %.3f µs",
                         1e6 / rs, 1e6 / hitsPerSecond))
        }
    }

    /// Operations per CPU-second of `body` over about `seconds` of this thread's CPU time. CPU time,
    /// not wall time: the machine is shared, and a descheduled thread would otherwise look slow.
    private func measure(seconds: Double, _ body: () -> Void) -> Double {
        let budget = seconds
        let start = threadCPUSeconds()
        var count = 0
        var elapsed = 0.0
        while elapsed < budget {
            for _ in 0..<64 { body() }
            count += 64
            elapsed = threadCPUSeconds() - start
        }
        return Double(count) / elapsed
    }

    private func threadCPUSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    /// Verify/s from `openssl speed -mr`: `+F2:i:bits:sign_s:verify_s` (RSA), `+F4:...` (ECDSA),
    /// `+F6:i:bits:name:sign_s:verify_s` (EdDSA). One process per algorithm, each killed after 30 s.
    private func opensslVerifyRates() -> [String: Double] {
        var rates: [String: Double] = [:]
        for name in ["rsa2048", "ecdsap256", "ed25519"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl", "speed", "-mr", "-seconds", "1", name]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            // `openssl speed` ends each test with SIGALRM. The child inherits this thread's signal
            // mask, and Dispatch worker threads block signals, so unblock them around the spawn.
            var all = sigset_t(), previous = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_UNBLOCK, &all, &previous)
            defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
            do { try process.run() } catch { return [:] }
            let pid = process.processIdentifier
            let watchdog = DispatchWorkItem { if process.isRunning { kill(pid, SIGKILL) } }
            DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            watchdog.cancel()
            for line in output.split(separator: "\n") {
                let fields = line.split(separator: ":")
                switch fields.first {
                case "+F2" where fields.count >= 5: rates["rsa2048"] = Double(fields[4])
                case "+F4" where fields.count >= 5: rates["ecdsap256"] = Double(fields[4])
                case "+F6" where fields.count >= 6: rates["ed25519"] = Double(fields[5])
                default: break
                }
            }
        }
        return rates
    }
}
