#!/usr/bin/env bash
# Installs what the benchmarks under cluster/bench need besides the Swift build (as root, with apt
# and pip), when it is missing: the peers (HAProxy 2.5+ for its JWT converters, nginx), wrk,
# taskset, curl, gnuplot for plot-propagation.sh, and Python's `cryptography` for the tokens.
# Further arguments are more Debian packages (allocations.sh asks for linux-perf). Idempotent and
# quick when everything is there; cluster/setup.sh runs it too.
#   cluster/bench/setup.sh [package...]
set -euo pipefail
need=()
for pkg in haproxy nginx-light wrk curl util-linux gnuplot-nox python3-pip "$@"; do
    # nginx-light is one of several builds of nginx; any of them will do.
    [ "$pkg" = nginx-light ] && command -v nginx >/dev/null && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench setup: missing Debian packages: ${need[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "bench setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! python3 -c "import cryptography" 2>/dev/null; then
    echo "bench setup: installing the Python module cryptography"
    python3 -m pip install -q cryptography 2>/dev/null || python3 -m pip install -q --break-system-packages cryptography
fi
