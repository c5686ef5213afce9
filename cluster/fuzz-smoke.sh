#!/usr/bin/env bash
# Builds the libFuzzer binary and fuzzes every target in it for a while: the JOSE parsers and
# verifier, the upstream response parser, chunked decoding, the request head path, the PROXY
# protocol header parser, the WebSocket relay's frame tracker and the HTTP/2 frame guard's scanner
# (docs/fuzzing.md). Default 20 s per target.
#   cluster/fuzz-smoke.sh [seconds per target] [target...]
# Exit status: 0 when no target crashed, non-zero otherwise (the crashing input is left in
# .build-fuzz/artifacts/<target>/ and named in the output).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jose response chunked request-head proxy-protocol websocket-frames http2-frames)
scratch=.build-fuzz

swift build -c debug --scratch-path "$scratch" --product PortcullisFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING -Xlinker --export-dynamic

# Committed seeds and dictionary per target.
seeds_of() {
    case "$1" in
        jose) echo Tests/PortcullisJOSETests/Vectors/fuzz-corpus ;;
        *) echo "Tests/PortcullisGatewayTests/Fuzz/$1" ;;
    esac
}
dict_of() {
    case "$1" in
        jose) echo Tests/PortcullisJOSETests/Vectors/fuzz.dict ;;
        proxy-protocol) echo Tests/PortcullisGatewayTests/Fuzz/proxy-protocol.dict ;;
        websocket-frames) echo Tests/PortcullisGatewayTests/Fuzz/websocket-frames.dict ;;
        *) echo Tests/PortcullisGatewayTests/Fuzz/http.dict ;;
    esac
}

# libFuzzer writes new inputs into the first directory; keep the committed seeds pristine.
# -detect_leaks=0 and ASAN_OPTIONS=detect_leaks=0 (libFuzzer's per-input check and ASan's check at
# exit): LeakSanitizer reports the harnesses' global fixtures at exit (Swift hides enum payload
# pointers in spare bits, so LSan cannot see they are reachable); the report is the same 59
# allocations after 72 runs as after a million (docs/fuzzing.md).
failed=()
for target in "${targets[@]}"; do
    work="$scratch/corpus/$target"
    artifacts="$scratch/artifacts/$target/"
    mkdir -p "$work" "$artifacts"
    echo "fuzz-smoke: $target for ${seconds}s"
    # SWIFT_BACKTRACE=enable=no: after a crash the Swift runtime's backtracer reads the stack
    # wholesale, which AddressSanitizer reports as a stack-buffer-overflow on top of the real failure.
    if ! PORTCULLIS_FUZZ_TARGET="$target" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" SWIFT_BACKTRACE=enable=no \
        "$scratch/debug/PortcullisFuzz" "$work" "$(seeds_of "$target")" \
        -dict="$(dict_of "$target")" \
        -max_len=4096 -timeout=10 -rss_limit_mb=2048 -detect_leaks=0 \
        -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$artifacts" 2>"$scratch/fuzz-$target.log"; then
        failed+=("$target")
        tail -n 40 "$scratch/fuzz-$target.log" >&2
    fi
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^#[0-9]+ +DONE' "$scratch/fuzz-$target.log" || true
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-smoke: crashed: ${failed[*]} (inputs in $scratch/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: ${targets[*]}: no crash"
