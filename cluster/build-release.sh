#!/usr/bin/env bash
# The one way the release binaries for the demo and the benchmarks are built: `swift build -c
# release` with Swift's dynamic exclusivity checks off in every Swift module, the dependencies
# (SwiftNIO above all) included. Package.swift can turn them off only for our own targets.
#   cluster/build-release.sh [--product portcullis]   (any further `swift build` arguments)
#
# Why: in the request path the checks cost about 1 µs of the gateway's ~24 µs per request
# (docs/benchmarks.md), most of it inside NIO's pipeline and HTTP decoder. What is given up: an
# overlapping access that the checks would stop with a trap becomes undefined behaviour. The
# debug build keeps them in every module, and the whole test suite runs on it (docs/security.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec swift build -c release -Xswiftc -enforce-exclusivity=unchecked "$@"
