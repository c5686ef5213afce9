#!/usr/bin/env bash
# Installs what Portcullis needs to build, test and run on Debian 12 (as root), then builds.
#   cluster/setup.sh [debug|release]     (default: debug)
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

config="${1:-debug}"

cluster/install-packages.sh setup redis-server redis-sentinel libhiredis-dev pkg-config prometheus curl wrk python3-pip \
    python3-yaml spin gcc podman debootstrap iproute2 openssl util-linux nghttp2-client
# Peers of gateway tests: HAProxy sends PROXY protocol headers (ProxyProtocolTests); headless
# Chromium, driven by Selenium, enforces CORS as browsers do (CORSBrowserTests), signs in at the
# authorization server's pages (AuthorizationCodeBrowserTests), and plays the person of the demo
# (cluster/demo-app/story.py, run by cluster/demo.sh, which calls this with `release`).
cluster/install-packages.sh setup haproxy chromium chromium-driver python3-selenium

# Python is used only by tests and tools, never by the gateway: an independent JOSE implementation
# (joserfc) mints the cross-implementation test tokens, authlib plays a real OAuth client, schemathesis
# checks the admin API against docs/openapi.yaml, h11 is the reference parser of the request-framing
# differential test (Tests/PortcullisGatewayTests/RequestFramingDifferentialTests.swift), h2 (with
# its hpack and hyperframe) builds the raw HTTP/2 frames of the HTTP/2 attack tests, grpcio is the
# real gRPC client and server of the gRPC tests, websockets plays WebSocket client and echo server
# (Tests/PortcullisClusterTests/WebSocketSessionTests.swift), opentelemetry-proto decodes the spans
# the gateway exports in the OTLP receiver of the tracing tests (Tests/PortcullisGatewayTests/TracingTests.swift),
# kubernetes-validate checks the Kubernetes manifests (cluster/package-test.sh; pinned: its schemas
# decide what passes).
py_need=()
for mod in joserfc authlib requests schemathesis h11 h2 grpc websockets; do
    python3 -c "import $mod" 2>/dev/null || py_need+=("$([ "$mod" = grpc ] && echo grpcio || echo "$mod")")
done
python3 -c "import opentelemetry.proto" 2>/dev/null || py_need+=(opentelemetry-proto)
[ "$(kubernetes-validate --version 2>/dev/null)" = 1.37.0 ] || py_need+=("kubernetes-validate==1.37.0")
if [ ${#py_need[@]} -gt 0 ]; then
    echo "setup: installing Python modules ${py_need[*]}"
    python3 -m pip install -q "${py_need[@]}" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "${py_need[@]}"
fi

# The benchmarks' peers (HAProxy, nginx, wrk, …); the test suite runs the peer harness's checks.
cluster/bench/setup.sh

command -v swift >/dev/null || { echo "setup: the Swift toolchain is not on PATH" >&2; exit 1; }
echo "setup: building ($config)"
if [ "$config" = release ]; then
    cluster/build-release.sh
else
    swift build -c "$config"
fi
