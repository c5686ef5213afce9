#!/usr/bin/env bash
# Builds the release archive portcullis-<version>-linux-x86_64.tar.gz (docs/deployment.md):
#   bin/portcullis                      the binary (Swift runtime linked in by cluster/build-release.sh)
#   examples/                           gateway.yaml, control.yaml (secrets in files and the environment)
#   systemd/                            portcullis-gateway@.service, portcullis-control.service, portcullis.sysusers
#   Containerfile, kubernetes/          the container image and the Kubernetes manifests
#   redis/                              users.acl and make-acl.sh, when cluster/redis/ has them
#   doc/                                deployment, configuration, operations and security guides
#   licenses/                           every Swift package's licence files, the Swift runtime's, hiredis's
#   RUNTIME-DEPENDENCIES, README.md     the shared libraries the binary loads (from ldd), what to install
#   SHA256SUMS                          of every file above
#
#   cluster/package.sh [--binary PATH] [--out DIR] [--allow-toolchain-libs]
#
#   --binary PATH            package this binary (default: build with cluster/build-release.sh
#                            --product portcullis and package .build/release/portcullis)
#   --out DIR                where the archive goes (default: dist/)
#   --allow-toolchain-libs   accept a binary that loads the Swift runtime from a toolchain (a debug
#                            or plain `swift build` binary: tests only; such an archive does not
#                            run on a host without the toolchain, and the name says nothing of it)
# Prints the archive's path on its last line of output.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

binary=""
out="$root/dist"
allow_toolchain=false
die() { echo "package.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
        --allow-toolchain-libs) allow_toolchain=true; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

for tool in ldd tar gzip sha256sum python3 swift; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

if [ -z "$binary" ]; then
    echo "package.sh: building the release binary (cluster/build-release.sh --product portcullis)"
    cluster/build-release.sh --product portcullis
    binary="$root/.build/release/portcullis"
fi
[ -x "$binary" ] || die "no executable at $binary"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

version=$("$binary" --version) || die "$binary --version failed"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "unexpected version '$version' from $binary --version"
arch=$(uname -m)
[ "$arch" = x86_64 ] || die "this script packages linux-x86_64 binaries; this machine is $arch"
name="portcullis-$version-linux-x86_64"

# --- shared libraries the binary loads ------------------------------------------------------------
ldd_out=$(ldd "$binary") || die "ldd $binary failed"
if grep -q 'not found' <<<"$ldd_out"; then
    die "ldd: $binary needs libraries this machine lacks: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
fi
# Libraries of a Swift toolchain: a binary that loads them was not built with --static-swift-stdlib.
toolchain_libs=$(awk '{print $1}' <<<"$ldd_out" | grep -E '^(libswift|lib_?Foundation|libdispatch|libBlocksRuntime|lib_FoundationICU)' || true)
if [ -n "$toolchain_libs" ] && ! $allow_toolchain; then
    die "$binary loads the Swift runtime from a toolchain ($(echo "$toolchain_libs" | tr '\n' ' ')); build it with cluster/build-release.sh (--static-swift-stdlib), or pass --allow-toolchain-libs for a test archive"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dest="$stage/$name"
mkdir -p "$dest"/{bin,examples,systemd,kubernetes,doc,licenses}

install -m 0755 "$binary" "$dest/bin/portcullis"
install -m 0644 packaging/examples/*.yaml "$dest/examples/"
install -m 0644 packaging/systemd/portcullis-gateway@.service packaging/systemd/portcullis-control.service \
    packaging/systemd/portcullis.sysusers "$dest/systemd/"
install -m 0644 packaging/Containerfile "$dest/Containerfile"
install -m 0644 packaging/kubernetes/*.yaml "$dest/kubernetes/"
for doc in deployment configuration operations security; do
    install -m 0644 "docs/$doc.md" "$dest/doc/$doc.md"
done

acl_note="not included: this source tree has no cluster/redis/users.acl (see docs/security.md)"
if [ -f cluster/redis/users.acl ]; then
    mkdir -p "$dest/redis"
    install -m 0644 cluster/redis/users.acl "$dest/redis/users.acl"
    [ ! -f cluster/redis/make-acl.sh ] || install -m 0755 cluster/redis/make-acl.sh "$dest/redis/make-acl.sh"
    acl_note="redis/users.acl (one Redis ACL user per role), redis/make-acl.sh (fills in password hashes)"
else
    echo "package.sh: warning: cluster/redis/users.acl is absent; the archive has no Redis ACL file" >&2
fi

# One line per library: soname and the Debian package that provides it on this machine.
{
    echo "# Shared libraries bin/portcullis loads (ldd on the packaging machine) and the Debian 12"
    echo "# package providing each. Install these on every host: apt-get install libhiredis0.14"
    echo "# (the others are part of every Debian system)."
    while read -r soname _ path _; do
        case "$soname" in linux-vdso.so.*|"") continue ;; esac
        if [[ "$soname" == /* ]]; then path=$soname; soname=$(basename "$soname"); fi
        pkg=$(dpkg -S "$(readlink -f "${path:-/nonexistent}")" 2>/dev/null | head -n1 | cut -d: -f1 || true)
        [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1 || true)
        case "$soname" in
            libswift*|lib_Foundation*|libFoundation*|libdispatch*|libBlocksRuntime*) pkg="swift-toolchain (NOT a release build)" ;;
        esac
        printf '%-32s %s\n' "$soname" "${pkg:-unknown}"
    done <<<"$ldd_out"
} >"$dest/RUNTIME-DEPENDENCIES"

# --- licences --------------------------------------------------------------------------------------
# Every package in the dependency graph, with the checkout SwiftPM resolved it to (a plain clone
# resolves here, which needs the network once).
swift package show-dependencies --format json >"$stage/deps.json" 2>"$stage/deps.log" \
    || { cat "$stage/deps.log" >&2; die "swift package show-dependencies failed"; }
python3 - "$dest/licenses" "$stage/deps.json" <<'PY' || die "copying the packages' licence files failed"
import json, os, shutil, sys
dest = sys.argv[1]
graph = json.load(open(sys.argv[2]))
seen = {}
def walk(node):
    for dep in node.get("dependencies", []):
        seen.setdefault(dep["identity"], dep)
        walk(dep)
walk(graph)
missing, lines = [], []
for ident, dep in sorted(seen.items()):
    path = dep["path"]
    files = sorted(f for f in os.listdir(path)
                   if f.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE")) and os.path.isfile(os.path.join(path, f)))
    if not any(f.upper().startswith(("LICENSE", "LICENCE", "COPYING")) for f in files):
        missing.append(ident)
        continue
    os.makedirs(os.path.join(dest, ident))
    for f in files:
        shutil.copyfile(os.path.join(path, f), os.path.join(dest, ident, f))
    lines.append(f"{ident:34} {dep['version']:10} {dep['url']}")
if missing:
    sys.exit("no licence file in the checkout of: " + ", ".join(missing))
with open(os.path.join(dest, "PACKAGES"), "w") as out:
    out.write("# Swift packages in the dependency graph (identity, resolved version, source).\n")
    out.write("# Their licence files are in the folder of the same name.\n")
    out.write("\n".join(lines) + "\n")
PY

swift_root=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
mkdir -p "$dest/licenses/swift-runtime"
if [ -f "$swift_root/share/swift/LICENSE.txt" ]; then
    install -m 0644 "$swift_root/share/swift/LICENSE.txt" "$dest/licenses/swift-runtime/LICENSE.txt"
else
    die "no LICENSE.txt in the Swift toolchain ($swift_root/share/swift)"
fi
hiredis_copyright=/usr/share/doc/libhiredis0.14/copyright
[ -f "$hiredis_copyright" ] || die "no $hiredis_copyright (apt-get install libhiredis0.14)"
mkdir -p "$dest/licenses/hiredis"
install -m 0644 "$hiredis_copyright" "$dest/licenses/hiredis/copyright"
cat >"$dest/licenses/README" <<'EOF'
Licences of what bin/portcullis contains or loads.

Linked into the binary:
  - the Swift packages listed in PACKAGES, each with its licence files in the folder of its name
    (mostly Apache License 2.0; Yams and swift-argument-parser's dependencies name their own);
  - the Swift runtime, standard library, Foundation, Dispatch and the ICU data Foundation carries
    (cluster/build-release.sh links them statically): Apache License 2.0 with the Runtime Library
    Exception, swift-runtime/LICENSE.txt (ICU: the Unicode licence, in the same file's notices).
Loaded at run time from the host (not in this archive), see ../RUNTIME-DEPENDENCIES:
  - hiredis (libhiredis0.14): BSD 3-Clause, hiredis/copyright (Debian's copyright file);
  - the GNU C library, libstdc++ and libgcc (GCC Runtime Library Exception), zlib: the host's.
EOF

# --- README, checksums, archive ---------------------------------------------------------------------
if commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
    git diff --quiet HEAD -- || commit="$commit (with uncommitted changes)"
else
    commit="unknown (not a git checkout)"
fi
cat >"$dest/README.md" <<EOF
# Portcullis $version (linux-x86_64)

Built from commit $commit. One binary serves every role: \`portcullis gateway\`,
\`portcullis control\`, \`portcullis admin\`, \`portcullis token\` (\`--help\` on each).

Contents:
- \`bin/portcullis\`: the binary. Shared libraries it loads are in \`RUNTIME-DEPENDENCIES\`; on
  Debian 12 install \`libhiredis0.14\` (\`apt-get install libhiredis0.14\`), the rest is on every
  Debian system.
- \`examples/\`: \`gateway.yaml\`, \`control.yaml\` for a multi-host cluster, secrets outside the YAML.
- \`systemd/\`: \`portcullis-gateway@.service\` (instance = node id), \`portcullis-control.service\`,
  \`portcullis.sysusers\` (the \`portcullis\` system user).
- \`Containerfile\`: an image built from this folder (\`podman build -f Containerfile .\`).
- \`kubernetes/\`: Deployments, Services, a PodDisruptionBudget, NetworkPolicies, Secrets mounted as files.
- Redis ACL: $acl_note.
- \`doc/\`: \`deployment.md\` (start here), \`configuration.md\`, \`operations.md\`, \`security.md\`.
- \`licenses/\`: licences of everything in the binary and of the libraries it loads.
- \`SHA256SUMS\`: \`sha256sum -c SHA256SUMS\` checks every file.

Install on a host (doc/deployment.md has the whole walk-through):

    apt-get install libhiredis0.14
    install -m 0755 bin/portcullis /usr/local/bin/portcullis
    install -m 0644 systemd/portcullis.sysusers /usr/lib/sysusers.d/portcullis.conf && systemd-sysusers
    install -m 0644 systemd/*.service /etc/systemd/system/ && systemctl daemon-reload
EOF

(cd "$dest" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >SHA256SUMS)

mkdir -p "$out"
out=$(cd "$out" && pwd)
mtime=$(git log -1 --format=%cI 2>/dev/null || date -u +%FT%TZ)
archive="$out/$name.tar.gz"
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -cf - "$name" \
    | gzip -n >"$archive.tmp"
mv "$archive.tmp" "$archive"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "package.sh: $(du -h "$archive" | cut -f1) with $(find "$dest" -type f | wc -l) files"
echo "$archive"
