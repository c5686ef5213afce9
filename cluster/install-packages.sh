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
# Packages such as nginx, haproxy and redis-server start a system service when installed (nginx's
# default site listens on every address, port 80). Portcullis starts its own processes, so the
# services of the packages installed here are neither started (policy-rc.d, the Debian way to say
# so) nor enabled for the next boot. Packages that were already installed are left as they are.
policy=/usr/sbin/policy-rc.d
placed=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    placed=true
fi
status=0
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
if [ "$placed" = true ]; then rm -f "$policy"; fi
[ "$status" -eq 0 ] || exit "$status"
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for pkg in "${need[@]}"; do
        for unit in $(dpkg -L "$pkg" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.service$' | xargs -r -n1 basename); do
            systemctl disable --quiet "$unit" 2>/dev/null || true
        done
    done
fi
