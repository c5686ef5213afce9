#!/usr/bin/env bash
# The one way the release binaries for the demo and the benchmarks are built: `swift build -c
# release` with
#   - the Swift runtime, standard library and Foundation linked statically: a call into the
#     runtime (every retain and release, metadata lookups) is then a direct call rather than one
#     through the dynamic linker's tables, and the binary runs without a Swift toolchain;
#   - Swift's dynamic exclusivity checks off in every Swift module, the dependencies (SwiftNIO
#     above all) included; Package.swift can turn them off only for our own targets. What is given
#     up: an overlapping access the checks would stop with a trap becomes undefined behaviour. The
#     debug build keeps them in every module, and the whole test suite runs on it (docs/security.md).
# Each is worth 1–3.5 µs of the gateway's ~24 µs per request (docs/benchmarks.md).
#   cluster/build-release.sh [--product portcullis]   (any further `swift build` arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
exec swift build -c release --static-swift-stdlib -Xswiftc -enforce-exclusivity=unchecked "$@"
