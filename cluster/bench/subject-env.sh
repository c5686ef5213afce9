# Sourced by the benchmark scripts: finds the peer harness (the repository's own,
# cluster/bench/peers, unless PEERS_DIR names another with the same interface) and says how it
# runs a Portcullis binary as its subject.
# Sets `root` (the repository) and `peers`; `subject_env BINARY` exports the subject's variables
# (with PROTO=h2 the subject's config gets a TLS listener with the run's certificate).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers=${PEERS_DIR:-$root/cluster/bench/peers}
[ -x "$peers/run-peers.sh" ] || { echo "peer harness not found at $peers/run-peers.sh (PEERS_DIR)" >&2; exit 1; }
subject_env() {
  export SUBJECT_SETUP="$root/cluster/bench/gateway-subject-setup.sh @KEYS@/portcullis.yaml @PORT@ @BACKEND@ @JWKS@ @ISS@ @AUD@"
  if [ "${PROTO:-h1}" = h2 ]; then SUBJECT_SETUP+=" @TLS_CERT@ @TLS_KEY@"; fi
  export SUBJECT_CMD="exec $1 gateway --config @KEYS@/portcullis.yaml --log-level warning"
  export SUBJECT_READY=/public/
  export SUBJECT_PUBLIC_PATH=/public/
  export SUBJECT_PATH=/api/
}
