#!/usr/bin/env bash
# Installs those of the named Debian packages that are missing, with apt (as root); when not root,
# names them and fails. Used by cluster/setup.sh and cluster/bench/setup.sh.
#   cluster/install-packages.sh WHO PACKAGE...     (WHO prefixes the messages)
set -euo pipefail
who=$1
shift
need=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "$who: missing Debian packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
fi
echo "$who: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
