# Sourced by the benchmark scripts: how the peer harness (../shared/bench/peers) runs a
# Portcullis binary as its subject. Usage: subject_env BINARY
subject_env() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  export SUBJECT_SETUP="$root/cluster/bench/gateway-subject-setup.sh @KEYS@/portcullis.yaml @PORT@ @BACKEND@ @JWKS@ @ISS@ @AUD@"
  export SUBJECT_CMD="exec $1 gateway --config @KEYS@/portcullis.yaml --log-level warning"
  export SUBJECT_READY=/public/
  export SUBJECT_PUBLIC_PATH=/public/
  export SUBJECT_PATH=/api/
}
