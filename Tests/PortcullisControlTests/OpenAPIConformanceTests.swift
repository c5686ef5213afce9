import Foundation
import PortcullisTestSupport
import Testing

extension ControlPlaneTests {
    @Suite("OpenAPI conformance")
    struct OpenAPIConformanceTests {
        @Test("the running admin API conforms to docs/openapi.yaml (schemathesis: valid and invalid requests)")
        func schemathesis() async throws {
            let cluster = try await ControlCluster()
            defer { Task { await cluster.shutdown() } }
            let control = cluster.control
            // Some state, so that lists, lookups and propagation have content.
            _ = try cluster.clientCredentials()
            #expect(try control.admin("POST", "/v1/revocations", json: #"{"kind":"subject","value":"seed"}"#).status == 201)
            let spec = PortcullisBinary.packageRoot + "/docs/openapi.yaml"
            guard let result = try runPythonScript("openapi_conformance.py", ["--spec", spec, "--url", control.adminURL, "--token", ControlCluster.adminToken]) else {
                print("skipped: schemathesis is not installed (cluster/setup.sh installs it)")
                return
            }
            #expect(result.status == 0, "schemathesis found non-conformance:\n\(result.stdout.suffix(6000))\n\(result.stderr.suffix(2000))")
            // The fuzzing really reached the server.
            #expect(try control.metrics().contains(#"portcullis_admin_requests_total{method="POST",route="/v1/revocations",status="400"}"#))
        }
    }
}
