#!/usr/bin/env bash
# Portcullis against nginx and HAProxy over HTTP/2: the peer harness (cluster/bench/peers) with
# PROTO=h2 and the gateway as its subject — HTTP/2 over TLS (a throw-away certificate), h2load
# in 1 connection x 100 streams and 64 connections x 10 streams (H2_SHAPES), RS256 with one
# token against HAProxy's jwt_verify, and nginx's plain HTTP/2 proxy; upstreams in HTTP/1.1.
# Builds the release gateway first unless PORTCULLIS_BIN names one (as gateway-vs-peers.sh).
#   cluster/bench/h2-vs-peers.sh                                        # full run (~6 min)
#   DURATION=5s REPEATS=3 PORTCULLIS_BIN=/path/to/portcullis cluster/bench/h2-vs-peers.sh
set -euo pipefail
export PROTO=h2
exec "$(dirname "$0")/gateway-vs-peers.sh"
