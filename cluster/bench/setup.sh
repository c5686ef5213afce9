#!/usr/bin/env bash
# Installs what the benchmarks under cluster/bench need besides the Swift build (as root, with apt
# and pip), when it is missing: the peers (HAProxy 2.5+ for its JWT converters, nginx), wrk,
# h2load (nghttp2-client) and openssl for the HTTP/2 rows, taskset, curl, gnuplot for
# plot-propagation.sh, Python's `cryptography` for the tokens and `h2` for h2-held-memory.sh.
# Further arguments are more Debian packages (allocations.sh asks for linux-perf). Idempotent and
# quick when everything is there; cluster/setup.sh runs it too.
#   cluster/bench/setup.sh [package...]
set -euo pipefail
packages=(haproxy wrk nghttp2-client openssl curl util-linux gnuplot-nox python3-pip "$@")
# nginx-light is one of several builds of nginx; any of them will do.
command -v nginx >/dev/null || packages+=(nginx-light)
"$(dirname "$0")/../install-packages.sh" "bench setup" "${packages[@]}"
for module in cryptography h2; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "bench setup: installing the Python module $module"
        python3 -m pip install -q "$module" 2>/dev/null || python3 -m pip install -q --break-system-packages "$module"
    fi
done
