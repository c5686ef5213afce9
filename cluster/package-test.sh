#!/usr/bin/env bash
# Tests the release packaging (cluster/package.sh, packaging/): builds the archive from a given
# binary and checks
#   1. its file list, checksums, version, licences and runtime dependencies;
#   2. the systemd units: `systemd-analyze verify` (clean: no error and no warning), the exposure
#      score of `systemd-analyze security --offline`, and the directives issue 17 requires;
#   3. the Kubernetes manifests: `kubernetes-validate --strict` against a pinned Kubernetes
#      version, and the probes, security contexts, disruption budget and secret mounts;
#   4. the archive's layout: unpacked into a temporary root as docs/deployment.md installs it,
#      `portcullis --version` and `--check` of both example configs and of the configs in the
#      Kubernetes ConfigMap, with dummy secrets, certificates and environment; a missing secret
#      must fail the check;
#   5. the Containerfile, with podman: build the image (from a local Debian 12 base made with
#      debootstrap, as no registry is reachable here) and run the same checks in a container.
#      Skipped, saying why, when podman cannot build or run here.
#
#   cluster/package-test.sh [BINARY]      (default: .build/debug/portcullis)
# Environment: PORTCULLIS_CONTAINER_TEST=0 skips step 5; KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
binary=${1:-$root/.build/debug/portcullis}
[ -x "$binary" ] || { echo "package-test: no binary at $binary" >&2; exit 1; }
# The Kubernetes version the manifests are validated against (kubernetes-validate's schemas).
K8S_VERSION=1.33.0
BASE_IMAGE=localhost/portcullis-test-base:bookworm

work=$(mktemp -d)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "package-test: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
ok() { echo "package-test: ok: $*"; }

# --- 0. the archive -----------------------------------------------------------------------------
extra=()
# ldd's output is read whole before it is searched: the loader writes it line by line, and with
# pipefail a `grep -q` that stops reading early can fail the pipeline (ldd killed by SIGPIPE).
binary_libs=$(ldd "$binary")
if grep -q 'libswiftCore' <<<"$binary_libs"; then
    # A debug binary loads the toolchain's Swift runtime: package.sh must refuse it unless told.
    if cluster/package.sh --binary "$binary" --out "$work/refused" >"$work/refused.log" 2>&1; then
        fail "package.sh packaged a binary that loads the toolchain's Swift runtime without --allow-toolchain-libs"
    fi
    grep -q 'loads the Swift runtime from a toolchain' "$work/refused.log" || fail "package.sh failed for another reason: $(tail -n 3 "$work/refused.log")"
    ok "package.sh refuses a binary that loads the toolchain's Swift runtime"
    extra=(--allow-toolchain-libs)
fi
cluster/package.sh --binary "$binary" --out "$work/dist" "${extra[@]}" >"$work/package.log" 2>&1 \
    || { cat "$work/package.log" >&2; fail "package.sh failed"; }
archive=$(tail -n 1 "$work/package.log")
version=$("$binary" --version)
name="portcullis-$version-linux-x86_64"
[ "$archive" = "$work/dist/$name.tar.gz" ] || fail "archive is $archive, expected $work/dist/$name.tar.gz"
(cd "$work/dist" && sha256sum -c --quiet "$name.tar.gz.sha256") || fail "the archive's .sha256 does not match"

# --- 1. file list ----------------------------------------------------------------------------------
tar -tzf "$archive" | LC_ALL=C sort >"$work/list"
grep -qv "^$name/" "$work/list" && fail "entries outside $name/: $(grep -v "^$name/" "$work/list" | head -n 3)"
required=(bin/portcullis README.md RUNTIME-DEPENDENCIES SHA256SUMS Containerfile
    examples/gateway.yaml examples/control.yaml
    systemd/portcullis-gateway@.service systemd/portcullis-control.service systemd/portcullis.sysusers
    kubernetes/namespace.yaml kubernetes/secrets.yaml kubernetes/configmap.yaml kubernetes/gateway.yaml kubernetes/control.yaml
    kubernetes/networkpolicy.yaml
    doc/deployment.md doc/configuration.md doc/operations.md doc/security.md
    licenses/README licenses/PACKAGES licenses/swift-runtime/LICENSE.txt licenses/hiredis/copyright)
if [ -f cluster/redis/users.acl ]; then required+=(redis/users.acl); fi
for f in "${required[@]}"; do
    grep -qx "$name/$f" "$work/list" || fail "the archive lacks $f"
done
if [ ! -f cluster/redis/users.acl ] && grep -q "^$name/redis/" "$work/list"; then
    fail "the archive has redis/ but this tree has no cluster/redis/users.acl"
fi
tar -C "$work" -xzf "$archive"
a="$work/$name"
(cd "$a" && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS does not match the files"
[ "$(wc -l <"$a/SHA256SUMS")" -eq "$(find "$a" -type f ! -name SHA256SUMS | wc -l)" ] || fail "SHA256SUMS does not cover every file"
[ "$("$a/bin/portcullis" --version)" = "$version" ] || fail "bin/portcullis --version is not $version"
cmp -s "$binary" "$a/bin/portcullis" || fail "bin/portcullis is not the given binary"
grep -q '^libhiredis\.so\.0\.14 *libhiredis0\.14$' "$a/RUNTIME-DEPENDENCIES" || fail "RUNTIME-DEPENDENCIES does not name libhiredis0.14"
grep -q 'libhiredis0.14' "$a/README.md" || fail "README.md does not say to install libhiredis0.14"
# Every package SwiftPM resolved has its licence in the archive.
swift package show-dependencies --format json 2>/dev/null | python3 -c '
import json, os, sys
lic = sys.argv[1]
seen = set()
def walk(n):
    for d in n.get("dependencies", []):
        seen.add(d["identity"]); walk(d)
walk(json.load(sys.stdin))
bad = [p for p in sorted(seen) if not any(f.upper().startswith(("LICENSE", "LICENCE", "COPYING"))
       for f in (os.listdir(os.path.join(lic, p)) if os.path.isdir(os.path.join(lic, p)) else []))]
if not seen or bad:
    sys.exit("no licence in the archive for: " + (", ".join(bad) or "(no packages found)"))
listed = {l.split()[0] for l in open(os.path.join(lic, "PACKAGES")) if l.strip() and not l.startswith("#")}
if listed != seen:
    sys.exit("licenses/PACKAGES differs from the dependency graph: %s" % sorted(listed ^ seen))
' "$a/licenses" || fail "licences"
grep -q 'Runtime Library Exception' "$a/licenses/swift-runtime/LICENSE.txt" || fail "the Swift runtime licence lacks the runtime library exception"
grep -qi 'BSD-3-clause' "$a/licenses/hiredis/copyright" || fail "hiredis's copyright file does not name BSD-3-Clause"
ok "archive $name.tar.gz: $(wc -l <"$work/list") entries, checksums, version, licences of $(grep -vc '^#' "$a/licenses/PACKAGES") packages, runtime dependencies"

# --- 2. systemd units -----------------------------------------------------------------------------
# `systemd-analyze verify` checks that ExecStart's binary exists and that the units' dependencies
# load; against this machine's / it would need /usr/local/bin/portcullis installed. So it runs
# with --root on a copy of the install layout: the binary at /usr/local/bin, the units in
# /etc/systemd/system, this machine's system units (for sysinit.target and the like) and /bin/kill.
sr="$work/sysroot"
mkdir -p "$sr/usr/local/bin" "$sr/etc/systemd/system" "$sr/usr/lib/systemd" "$sr/bin"
ln "$a/bin/portcullis" "$sr/usr/local/bin/portcullis" 2>/dev/null || cp "$a/bin/portcullis" "$sr/usr/local/bin/portcullis"
cp "$a"/systemd/*.service "$sr/etc/systemd/system/"
cp -a /usr/lib/systemd/system "$sr/usr/lib/systemd/"
cp /bin/kill "$sr/bin/kill"   # the units' ExecReload; procps ships it on Debian
for unit in portcullis-control.service portcullis-gateway@gw-1.service; do
    # verify exits 0 on unknown keys and unparsable values (it only warns): any output fails too.
    if ! (cd "$work" && systemd-analyze verify --root="$sr" "$unit") >"$work/verify.log" 2>&1 || [ -s "$work/verify.log" ]; then
        cat "$work/verify.log" >&2
        fail "systemd-analyze verify $unit"
    fi
    # The exposure score (0 = fully locked down, 10 = unprotected); ours is 1.5.
    if ! (cd "$work" && systemd-analyze security --offline=yes --root="$sr" --threshold=20 "$unit") >"$work/security.log" 2>&1; then
        grep -E 'Overall|✗' "$work/security.log" >&2 || cat "$work/security.log" >&2
        fail "systemd-analyze security $unit scores above 2.0"
    fi
done
drain=$(sed -n 's/^ *drain_timeout: *\([0-9]*\)s.*/\1/p' "$a/examples/gateway.yaml")
drain=${drain:-30}
for unit in "$a"/systemd/*.service; do
    u=$(basename "$unit")
    for line in 'User=portcullis' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'NoNewPrivileges=yes' \
        'CapabilityBoundingSet=' 'SystemCallFilter=@system-service' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure'; do
        grep -qxF "$line" "$unit" || fail "$u lacks the line $line"
    done
    grep -q '^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$' "$unit" || fail "$u: RestrictAddressFamilies"
    grep -q '^ReadWritePaths=' "$unit" && fail "$u: ReadWritePaths (nothing should be writable)"
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$unit")
    [ -n "$stop" ] && [ "$stop" -gt "$drain" ] || fail "$u: TimeoutStopSec (${stop:-unset}) must exceed drain_timeout (${drain}s)"
done
ok "systemd units: systemd-analyze verify clean, exposure ≤ 2.0, hardening directives, TimeoutStopSec > drain_timeout (${drain}s)"

# --- 3. Kubernetes manifests -------------------------------------------------------------------------
command -v kubernetes-validate >/dev/null || fail "kubernetes-validate is not installed (cluster/setup.sh installs it)"
if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$a"/kubernetes/*.yaml >"$work/k8s.log" 2>&1; then
    cat "$work/k8s.log" >&2
    fail "kubernetes-validate --strict -k $K8S_VERSION"
fi
python3 - "$a/kubernetes" "$drain" <<'PY' || fail "Kubernetes manifests"
import glob, sys, yaml
docs = [d for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
drain = int(sys.argv[2])
def one(kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1: sys.exit(f"expected one {kind} {name}, found {len(found)}")
    return found[0]
gw, cp = one("Deployment", "portcullis-gateway"), one("Deployment", "portcullis-control")
pdb, svc = one("PodDisruptionBudget", "portcullis-gateway"), one("Service", "portcullis-gateway")
one("Service", "portcullis-control")
c = gw["spec"]["template"]["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
r, l = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
if r["path"] != "/readyz" or ports.get(r["port"]) != 9901: sys.exit(f"gateway readinessProbe {r}: expected /readyz on the admin port 9901")
if l["path"] != "/healthz" or ports.get(l["port"]) != 9901: sys.exit(f"gateway livenessProbe {l}: expected /healthz on the admin port 9901")
if pdb["spec"]["selector"]["matchLabels"] != gw["spec"]["selector"]["matchLabels"]: sys.exit("the PodDisruptionBudget does not select the gateways")
if svc["spec"]["selector"] != gw["spec"]["selector"]["matchLabels"]: sys.exit("the gateway Service does not select the gateways")
if pdb["spec"].get("minAvailable", 0) >= gw["spec"]["replicas"]: sys.exit("minAvailable ≥ replicas: no node could ever be drained")
for d in (gw, cp):
    pod = d["spec"]["template"]["spec"]
    n = d["metadata"]["name"]
    if pod.get("terminationGracePeriodSeconds", 30) <= drain: sys.exit(f"{n}: terminationGracePeriodSeconds must exceed drain_timeout {drain}s")
    if not pod["securityContext"].get("runAsNonRoot"): sys.exit(f"{n}: runAsNonRoot")
    for ct in pod["containers"]:
        sc = ct["securityContext"]
        if not sc.get("readOnlyRootFilesystem"): sys.exit(f"{n}: readOnlyRootFilesystem")
        if sc.get("allowPrivilegeEscalation") is not False: sys.exit(f"{n}: allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]: sys.exit(f"{n}: capabilities must drop ALL")
        for e in ct.get("env", []) + ct.get("envFrom", []):
            if "secretKeyRef" in e.get("valueFrom", {}) or "secretRef" in e: sys.exit(f"{n}: a Secret in the environment; mount it as a file")
    if not any("secret" in v for v in pod["volumes"]): sys.exit(f"{n}: no Secret mounted as files")
# Network policies: ingress denied by default; each pod's public port open, its admin port only
# to the sources a rule names.
policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
if not any(p["spec"]["podSelector"] == {} and p["spec"].get("policyTypes") == ["Ingress"] and not p["spec"].get("ingress") for p in policies):
    sys.exit("no NetworkPolicy denies ingress to every pod by default")
for d, public, admin in ((gw, 8443, 9901), (cp, 9000, 9001)):
    labels = d["spec"]["template"]["metadata"]["labels"]
    rules = [r for p in policies if p["spec"]["podSelector"] != {} and
             p["spec"]["podSelector"]["matchLabels"].items() <= labels.items() for r in p["spec"].get("ingress", [])]
    def admits(port, open_only):
        return any(port in [x["port"] for x in r.get("ports", [])] and (not r.get("from")) == open_only for r in rules)
    if not admits(public, True): sys.exit(f"{d['metadata']['name']}: port {public} not open to clients")
    if admits(admin, True): sys.exit(f"{d['metadata']['name']}: admin port {admin} open to every source")
    if not admits(admin, False): sys.exit(f"{d['metadata']['name']}: admin port {admin} not admitted for Prometheus")
PY
ok "Kubernetes manifests: kubernetes-validate --strict against $K8S_VERSION, probes on /readyz and /healthz, PDB, non-root read-only pods, Secrets as files, ingress denied but for public ports and Prometheus"

# --- 4. the layout, unpacked into a root --------------------------------------------------------------
# As docs/deployment.md installs it, under $fr instead of /. Configs name /etc/portcullis/… and
# /run/secrets/portcullis/…; here those prefixes are rewritten to $fr.
fr="$work/root"
mkdir -p "$fr/usr/local/bin" "$fr/etc/portcullis/secrets" "$fr/etc/portcullis/certs" "$fr/run/secrets/portcullis"/{cluster,control,tls}
install -m 0755 "$a/bin/portcullis" "$fr/usr/local/bin/portcullis"
install -m 0644 "$a/examples/gateway.yaml" "$a/examples/control.yaml" "$fr/etc/portcullis/"
secret() { head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n'; }
cert() { # cert NAME KEYFILE CERTFILE
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
        -keyout "$2" -out "$3" 2>/dev/null || fail "openssl could not make a test certificate"
}
s="$fr/etc/portcullis/secrets" c="$fr/etc/portcullis/certs"
secret >"$s/cluster.secret"; secret >"$s/kek.secret"
cert redis-ca "$work/ca.key" "$c/redis-ca.pem"; cp "$c/redis-ca.pem" "$c/admin-clients-ca.pem"
cert gateway "$s/gateway.key" "$c/gateway.pem"
cert control "$s/control.key" "$c/control.pem"
k="$fr/run/secrets/portcullis"
cp "$s/cluster.secret" "$k/cluster/cluster.secret"; cp "$s/kek.secret" "$k/control/kek.secret"
echo "rediss://portcullis-gateway:$(secret)@redis:6380/0" >"$k/cluster/gateway-redis-url"
echo "rediss://portcullis-control:$(secret)@redis:6380/0" >"$k/cluster/control-redis-url"
cp "$s/control.key" "$k/tls/tls.key"; cp "$c/control.pem" "$k/tls/tls.crt"
cp "$c/redis-ca.pem" "$fr/etc/portcullis/redis-ca.pem"
python3 - "$a/kubernetes/configmap.yaml" "$fr/etc/portcullis" <<'PY'
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
for key in ("gateway.yaml", "control.yaml"):
    open(f"{sys.argv[2]}/k8s-{key}", "w").write(cm["data"][key])
PY
for f in "$fr"/etc/portcullis/*.yaml; do
    sed -i -e "s|/etc/portcullis/|$fr/etc/portcullis/|g" -e "s|/run/secrets/portcullis/|$k/|g" "$f"
done
check() { # check ROLE CONFIG [env…]
    local role=$1 config=$2; shift 2
    env -i PATH=/usr/bin:/bin "$@" "$fr/usr/local/bin/portcullis" "$role" --config "$config" --check >"$work/check.log" 2>&1
}
[ "$(env -i "$fr/usr/local/bin/portcullis" --version)" = "$version" ] || fail "portcullis --version from the unpacked root"
redis_pw=$(secret)
check gateway "$fr/etc/portcullis/gateway.yaml" REDIS_PASSWORD="$redis_pw" || { cat "$work/check.log" >&2; fail "gateway --check of examples/gateway.yaml"; }
grep -q "$redis_pw" "$work/check.log" && fail "--check printed the Redis password"
check control "$fr/etc/portcullis/control.yaml" REDIS_PASSWORD="$redis_pw" || { cat "$work/check.log" >&2; fail "control --check of examples/control.yaml"; }
check gateway "$fr/etc/portcullis/k8s-gateway.yaml" || { cat "$work/check.log" >&2; fail "gateway --check of the ConfigMap's gateway.yaml"; }
check control "$fr/etc/portcullis/k8s-control.yaml" || { cat "$work/check.log" >&2; fail "control --check of the ConfigMap's control.yaml"; }
# The checks above must be able to fail: without the environment, or without a secret file.
check gateway "$fr/etc/portcullis/gateway.yaml" && fail "gateway --check passed without REDIS_PASSWORD"
grep -q 'REDIS_PASSWORD' "$work/check.log" || fail "gateway --check without REDIS_PASSWORD failed for another reason: $(cat "$work/check.log")"
mv "$s/cluster.secret" "$s/cluster.secret.away"
check gateway "$fr/etc/portcullis/gateway.yaml" REDIS_PASSWORD="$redis_pw" && fail "gateway --check passed without the cluster secret file"
grep -q 'cluster.secret' "$work/check.log" || fail "gateway --check without the secret failed for another reason: $(cat "$work/check.log")"
mv "$s/cluster.secret.away" "$s/cluster.secret"
ok "unpacked layout: --version, --check of both examples and both ConfigMap configs; a missing variable or secret file fails the check"

# --- 5. the Containerfile, with podman -------------------------------------------------------------------
if [ "${PORTCULLIS_CONTAINER_TEST:-1}" = 0 ]; then
    echo "package-test: skipped: the container (PORTCULLIS_CONTAINER_TEST=0)"; exit 0
fi
if ! command -v podman >/dev/null; then
    echo "package-test: skipped: the container: podman is not installed (apt-get install podman debootstrap)"; exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "package-test: skipped: the container: the podman workarounds below need root"; exit 0
fi
# No container registry is reachable from this machine, so the base is a local Debian 12 minbase
# made with debootstrap from the Debian mirror apt uses (once; kept in podman's image store).
# The Containerfile's ARG BASE names it; a host with registry access builds FROM debian:bookworm-slim.
if ! podman image exists "$BASE_IMAGE"; then
    command -v debootstrap >/dev/null || { echo "package-test: skipped: the container: no $BASE_IMAGE and no debootstrap to make it"; exit 0; }
    echo "package-test: making $BASE_IMAGE with debootstrap (once, about 90 s)"
    debootstrap --variant=minbase bookworm "$work/base" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail -n 5 "$work/debootstrap.log" >&2; echo "package-test: skipped: the container: debootstrap failed"; exit 0; }
    tar -C "$work/base" -cf - . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$work/base"
fi
image="localhost/portcullis-package-test:$version"
# --isolation chroot: RUN steps without an OCI runtime (crun cannot start containers here, below).
if ! podman build --isolation chroot --network host --build-arg BASE="$BASE_IMAGE" -t "$image" -f "$a/Containerfile" "$a" >"$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2
    fail "podman build of the Containerfile"
fi
# Running needs three workarounds on this kind of host (a VM whose root lacks CAP_SYS_RESOURCE and
# mounts cgroup v1 with a cgroup2 at /sys/fs/cgroup/unified): crun refuses the "hybrid" cgroup
# layout, so the container runs in a private mount namespace without that mount and with
# --cgroups=disabled, and with rlimits no higher than the current ones.
run_opts=(--rm --cgroups=disabled --ulimit "nofile=1024:1024" --ulimit "nproc=1024:1024" --network none --read-only)
# A debug binary loads the Swift runtime from the toolchain: lend it read-only (a release binary
# has it linked in and needs nothing).
packaged_libs=$(ldd "$a/bin/portcullis")
if grep -q 'libswiftCore' <<<"$packaged_libs"; then
    swiftlib=$(dirname "$(awk '/libswiftCore/ {print $3}' <<<"$packaged_libs")")
    run_opts+=(-v "$swiftlib:$swiftlib:ro")
fi
chmod -R a+rX "$fr/etc/portcullis"   # the image's user (10001) reads them; test files only
# Serving from the image: a standalone gateway on the host's network whose one route points at a
# closed port, so the answer is the gateway's own 502 (uid 10001, no capabilities).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve_port=$(free_port); serve_admin=$(free_port); closed_port=$(free_port)
cat >"$work/serve.yaml" <<EOF
listen: 127.0.0.1:$serve_port
admin_listen: 127.0.0.1:$serve_admin
routes:
  - {name: closed, path_prefix: /, upstream: {targets: ["127.0.0.1:$closed_port"]}}
EOF
chmod a+r "$work/serve.yaml"
serve_opts="${run_opts[*]}"; serve_opts=${serve_opts/--network none/--network host}
cat >"$work/in-container.sh" <<EOF
set -e
mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified
podman run ${run_opts[*]} --entrypoint /usr/bin/id "$image" -u
podman run ${run_opts[*]} "$image" --version
podman run ${run_opts[*]} -e REDIS_PASSWORD=$redis_pw \\
    -v "$fr/etc/portcullis/secrets:/etc/portcullis/secrets:ro" -v "$fr/etc/portcullis/certs:/etc/portcullis/certs:ro" \\
    -v "$a/examples/gateway.yaml:/etc/portcullis/gateway.yaml:ro" "$image"  gateway --config /etc/portcullis/gateway.yaml --check
podman run ${run_opts[*]} -e REDIS_PASSWORD=$redis_pw \\
    -v "$fr/etc/portcullis/secrets:/etc/portcullis/secrets:ro" -v "$fr/etc/portcullis/certs:/etc/portcullis/certs:ro" \\
    -v "$a/examples/control.yaml:/etc/portcullis/control.yaml:ro" "$image" control --config /etc/portcullis/control.yaml --check
podman run $serve_opts -d --name pcx-serve-$$ -v "$work/serve.yaml:/etc/portcullis/serve.yaml:ro" "$image" \\
    gateway --config /etc/portcullis/serve.yaml >/dev/null
for i in \$(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$serve_admin/readyz" && break; sleep 0.1; done
curl -s -o /dev/null -w 'public %{http_code}\\n' "http://127.0.0.1:$serve_port/x" || echo "public: no answer"
podman logs pcx-serve-$$ 2>&1 | tail -n 5 | sed 's/^/serve log: /'
podman stop -t 10 pcx-serve-$$ >/dev/null || true
EOF
if ! unshare -m --propagation private bash "$work/in-container.sh" >"$work/run.log" 2>&1; then
    cat "$work/run.log" >&2
    podman rmi "$image" >/dev/null 2>&1 || true
    fail "running the image"
fi
podman rmi "$image" >/dev/null 2>&1 || true
[ "$(sed -n 1p "$work/run.log")" = 10001 ] || fail "the image runs as $(sed -n 1p "$work/run.log"), not 10001"
[ "$(sed -n 2p "$work/run.log")" = "$version" ] || fail "portcullis --version in the container: $(sed -n 2p "$work/run.log")"
grep -q '^configuration OK: 1 routes' "$work/run.log" || fail "gateway --check in the container: $(cat "$work/run.log")"
grep -q '^configuration OK: .*authorization server on' "$work/run.log" || fail "control --check in the container: $(cat "$work/run.log")"
grep -q '^public 502$' "$work/run.log" || fail "a gateway in the container did not answer a request with its 502: $(cat "$work/run.log")"
ok "Containerfile: built with podman, runs as uid 10001 on a read-only root; --version and --check of both examples in the container; a gateway in it serves (502 from a closed upstream)"
