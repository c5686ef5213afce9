#!/usr/bin/env bash
# Writes the gateway config the peer benchmark runs Portcullis with (called by run-peers.sh as
# SUBJECT_SETUP with its placeholders filled in). With CERT and KEY the listener is TLS (ALPN h2
# and http/1.1; the HTTP/2 settings are the defaults). GATEWAY_TRACING, when set, is written as the
# `tracing:` section (cluster/bench/tracing-ab.sh); GATEWAY_ACCESS_LOG=true turns the access log on
# (text format, to the subject's stderr).
#   gateway-subject-setup.sh CONFIG PORT BACKEND JWKS ISS AUD [CERT KEY]
set -euo pipefail
config=$1 port=$2 backend=$3 jwks=$4 iss=$5 aud=$6
extra=
if [ $# -ge 8 ]; then extra=$'\n'"tls: {certificate_chain: $7, private_key: $8}"; fi
if [ -n "${GATEWAY_TRACING:-}" ]; then extra+=$'\n'"tracing: $GATEWAY_TRACING"; fi
cat > "$config" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$((port + 1000))
event_loops: 1
access_log: ${GATEWAY_ACCESS_LOG:-false}$extra
issuers:
  - name: bench
    issuer: $iss
    audiences: [$aud]
    algorithms: [RS256, ES256]
    jwks_file: $jwks
routes:
  - name: public
    path_prefix: /public
    upstream: {targets: [$backend]}
  - name: api
    path_prefix: /
    upstream: {targets: [$backend]}
    auth: {type: jwt}
YAML
