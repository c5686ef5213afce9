#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test against real
# redis-server, control-plane and gateway processes on loopback, checks the dashboard and alerts
# against Prometheus, model-checks the revocation protocol with spin, checks the packaging and the
# multi-host bed, runs the peer benchmark's accept/reject checks, then a 20 s fuzz smoke of each
# fuzz target (docs/fuzzing.md).
#
# Suites run one after another (--no-parallel): many of them start clusters of processes and
# check timeouts, and on a 2-core machine running them all at once starves their event loops.
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/setup.sh debug
# Every test the docs name (the security model's proofs among them) exists under that name.
./cluster/check-doc-tests.py
export PORTCULLIS_BIN="$PWD/.build/debug/portcullis"
swift build --build-tests
# The log is kept so that a failure is summed up at the end of the output (the part a CI page
# shows), with every issue a test recorded and where.
mkdir -p cluster/.run
test_log=cluster/.run/swift-test.log
status=0
swift test --skip-build --no-parallel 2>&1 | tee "$test_log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "=== swift test failed (exit $status); the issues recorded:" >&2
    grep -E '^✘|↳|recorded an issue|Expectation failed|Caught error|fatal error|Fatal error' "$test_log" | head -200 >&2 || true
    exit "$status"
fi
# The operator's kit (docs/operations.md, "Dashboard and alerts"): the scrape config and alerting
# rules, a unit test per alert, then the dashboard, the rules, the PromQL of the docs and the
# metric tables against a live cluster scraped by Prometheus (about 10 s).
promtool check config cluster/prometheus.yml
promtool test rules cluster/observability/alerts-test.yml
./cluster/observability/test.py "$PORTCULLIS_BIN"
# The revocation protocol as a model (docs/model.md): the design and the Swift writer with
# acknowledgements that name the change applied (what the code does) must pass; each defence,
# removed, must let the checker find the attack, and so must the writer without named acks.
./cluster/model/check.sh
./cluster/model/check.sh --define IMPLWRITER --define ACKEVENT
for broken in "--broken MERGE" "--broken SEQMAC" "--broken ACKMAC" "--broken HOLES" "--define IMPLWRITER"; do
    # Exit 1 is "a property is violated"; 0 (unnoticed) and anything else (error, incomplete) fail.
    status=0
    # shellcheck disable=SC2086 # two words on purpose
    ./cluster/model/check.sh --no-trail $broken >/dev/null 2>&1 || status=$?
    if [ "$status" -ne 1 ]; then
        echo "model: with $broken the checker should find the attack (exit 1), it exited $status" >&2
        exit 1
    fi
    echo "model: with $broken the checker finds the attack, as it should"
done
# The release archive, units, manifests and container image (docs/deployment.md), from the debug binary.
./cluster/package-test.sh .build/debug/portcullis
# The multi-host bed (docs/deployment.md): network namespaces as hosts, the archive as installed,
# TLS and ACL users to Redis, Sentinel failover, a cut cable, a wrong CA, an ACL attack.
./cluster/hosts-ci.sh .build/debug/portcullis
# The peer benchmark's accept/reject checks (docs/benchmarks.md): both HAProxy JWT peers and the
# gateway refuse every forged token, and the checks fail a proxy that validates nothing; then the
# same over HTTP/2, with a short h2load run through each HTTP/2 configuration.
./cluster/bench/peers/self-check.sh .build/debug/portcullis
./cluster/fuzz-smoke.sh 20
