#!/usr/bin/env bash
# Model-checks the revocation-state protocol (cluster/model/revocation.pml) with spin, searching
# every reachable state exhaustively; docs/model.md explains the model.
#
#   cluster/model/check.sh                    the protocol as designed: must pass
#   cluster/model/check.sh --broken NAME      one defence removed (MERGE, SEQMAC, ACKMAC, HOLES,
#                                             STATELESS): must fail with a counterexample
#   cluster/model/check.sh --define NAME[=N]  another model switch (-DNAME), repeatable
#   cluster/model/check.sh --steps N          adversary budget (default 3; 4 takes minutes)
#   cluster/model/check.sh --no-trail         after a violation, skip the search for a short counterexample
#
# Exit status: 0 both properties hold in every reachable state; 1 a property is violated (the
# counterexample is printed); 2 usage, tool or model error; 3 the search was incomplete (depth or
# memory limit). The last line is always the summary: "model: N states, E errors (...)".
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
model="$here/revocation.pml"
steps=3
trail=1
broken=()
defines=()

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "check.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --broken|--broken=*)
      if [ "$1" = --broken ]; then [ $# -ge 2 ] || die "--broken needs a name"; name=$2; shift 2
      else name=${1#--broken=}; shift; fi
      case "$name" in
        MERGE|SEQMAC|ACKMAC|HOLES|STATELESS) broken+=("$name") ;;
        *) die "unknown defence '$name' (MERGE, SEQMAC, ACKMAC, HOLES, STATELESS)" ;;
      esac ;;
    --define|--define=*)
      if [ "$1" = --define ]; then [ $# -ge 2 ] || die "--define needs a name"; name=$2; shift 2
      else name=${1#--define=}; shift; fi
      [[ "$name" =~ ^[A-Z_][A-Z0-9_]*(=[0-9]+)?$ ]] || die "bad --define '$name'"
      defines+=("$name") ;;
    --steps|--steps=*)
      if [ "$1" = --steps ]; then [ $# -ge 2 ] || die "--steps needs a number"; steps=$2; shift 2
      else steps=${1#--steps=}; shift; fi
      [[ "$steps" =~ ^[0-9]$ ]] || die "--steps takes 0..9" ;;
    --no-trail) trail=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

command -v spin >/dev/null || die "spin not found (Debian/Ubuntu: apt-get install -y spin)"
command -v gcc >/dev/null || die "gcc not found"
[ -f "$model" ] || die "missing $model"

flags=("-DADV_STEPS=$steps")
label="adversary budget $steps"
for b in ${broken[@]+"${broken[@]}"}; do flags+=("-DBROKEN_$b"); label="broken $b, $label"; done
for d in ${defines[@]+"${defines[@]}"}; do flags+=("-D$d"); label="$label, $d"; done

work="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-model.XXXXXX")"
trap 'rm -rf "$work"' EXIT
memlim=${MODEL_MEMLIM_MB:-8192}

# build DIR EXTRA_SPIN_FLAGS... -- EXTRA_GCC_FLAGS...: generate and compile pan in DIR.
build() {
  local dir=$1; shift
  local sflags=() gflags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do sflags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  gflags=("$@")
  mkdir -p "$dir"
  cp "$model" "$dir/revocation.pml"
  (cd "$dir" && spin "${flags[@]}" ${sflags[@]+"${sflags[@]}"} -a revocation.pml >spin.log 2>&1) \
    || { cat "$dir/spin.log" >&2; die "spin -a failed"; }
  (cd "$dir" && gcc -O2 -w -DSAFETY -DNOBOUNDCHECK -DMEMLIM="$memlim" ${gflags[@]+"${gflags[@]}"} -o pan pan.c >gcc.log 2>&1) \
    || { cat "$dir/gcc.log" >&2; die "gcc failed"; }
}

# The verdict: exhaustive depth-first search, nodes' symmetry reduced, stop at the first error.
build "$work/v" -DSYMM --
started=$(date +%s.%N)
(cd "$work/v" && ./pan -m10000 -E -c1 -w24 >pan.out 2>&1) || true
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

out="$work/v/pan.out"
states=$(awk '/states, stored/ { print $1; exit }' "$out")
errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | head -1)
if [ -z "$states" ] || [ -z "$errors" ]; then
  cat "$out" >&2
  die "could not read pan's result"
fi
summary="model: $states states, $errors errors ($label, ${elapsed} s)"

if grep -q "max search depth too small" "$out"; then
  echo "$summary: INCOMPLETE, the search hit the depth limit"; exit 3
fi
if grep -qi "out of memory\|MEMLIM" "$out"; then
  echo "$summary: INCOMPLETE, the search ran out of memory (MODEL_MEMLIM_MB=$memlim)"; exit 3
fi

if [ "$errors" = 0 ]; then
  echo "$summary"
  exit 0
fi

violated=$(grep -o 'assertion violated [A-Za-z_]*' "$out" | head -1 || true)
[ -n "$violated" ] || violated=$(grep -m1 '^pan:' "$out" || echo "error")

print_trail() {  # print_trail DIR EXTRA_SPIN_FLAGS...
  local dir=$1; shift
  (cd "$dir" && spin "${flags[@]}" "$@" -t revocation.pml 2>&1) \
    | sed -n '/^#processes/q;p' | sed 's/^[[:space:]]*//' \
    | grep -v -e '^$' -e '^spin: warning' -e '^spin: trail ends' -e '^spin: revocation.pml:[0-9]*, Error: assertion violated' \
    | sed 's/^spin: text of failed assertion: assert(\(.*\))$/=> violated: \1/; s/^/  /' || true
}

if [ "$trail" = 1 ]; then
  # A second, breadth-first search without the symmetry reduction finds a short counterexample
  # in which each node keeps its name all along.
  build "$work/t" -DNOHIDDEN -- -DBFS
  (cd "$work/t" && ./pan -m10000 -E -c1 >pan.out 2>&1) || true
  if [ -f "$work/t/revocation.pml.trail" ]; then
    steps_n=$(sed -n 's/.*at depth \([0-9]*\).*/\1/p' "$work/t/pan.out" | head -1)
    echo "counterexample (breadth-first, ${steps_n:-?} steps; ADV = adversary, CP = control plane):"
    print_trail "$work/t" -DNOHIDDEN
  else
    echo "counterexample (depth-first; with the symmetry reduction node 0 and node 1 may swap names):"
    print_trail "$work/v" -DSYMM
  fi
fi

echo "$summary: $violated"
exit 1
