#!/usr/bin/env bash
# Coverage-guided fuzzing of every file and request reader (docs/fuzzing.md).
#   bash tools/fuzz/run.sh [--seconds N | --runs N] [--jobs N] [TARGET ...]
# Builds anchorkv-fuzz with libFuzzer, AddressSanitizer and coverage (.build/fuzz; checksums
# not enforced, see ChecksumPolicy), then fuzzes each target (default: all) from its committed
# corpus tools/fuzz/corpus/TARGET; new inputs go to .build/fuzz-corpus/TARGET. A crash, a
# sanitizer report, a timeout (10 s per input) or one allocation over 512 MB fails the run; the
# input is copied to tools/fuzz/found/TARGET/ (commit it with the fix: FuzzTargetsTests replays
# it). Prints one line per target: executions, seconds, coverage, crashes. CI runs --seconds 20.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=60 runs="" targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h|--help) sed -n 2,9p "$0"; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
        *) targets+=("$1"); shift ;;
    esac
done

rt=$(dirname "$(dirname "$(readlink -f "$(command -v swiftc)")")")/lib
fuzzer_lib=$(find "$rt" -name 'libclang_rt.fuzzer_no_main-x86_64.a' | head -1)
[ -n "$fuzzer_lib" ] || { echo "libFuzzer (libclang_rt.fuzzer_no_main) not found under $rt: this Swift toolchain cannot build the fuzzers" >&2; exit 69; }
mkdir -p .build
echo "[fuzz] building anchorkv-fuzz (libFuzzer + AddressSanitizer, .build/fuzz)" >&2
swift build -c release --product anchorkv-fuzz --build-path .build/fuzz \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
    -Xswiftc -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
    -Xlinker -u -Xlinker LLVMFuzzerRunDriver -Xlinker "$fuzzer_lib" -Xlinker -lstdc++ > .build/fuzz-build.log 2>&1 \
    || { grep -E "error" .build/fuzz-build.log | head -20 >&2; echo "[fuzz] the build failed (log: .build/fuzz-build.log)" >&2; exit 1; }
grep -E "^Build" .build/fuzz-build.log >&2 || true
bin=.build/fuzz/release/anchorkv-fuzz
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("$bin" list | cut -f1)

# The Swift backtracer would run inside ASan's report; LeakSanitizer flags the runtime's caches.
export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0
limit=(-max_total_time="$seconds"); [ -n "$runs" ] && limit=(-runs="$runs")
status=0
mkdir -p .build/fuzz-artifacts
for t in "${targets[@]}"; do
    work=.build/fuzz-corpus/$t
    mkdir -p "$work"
    log=.build/fuzz-artifacts/$t.log
    set +e
    "$bin" "$t" "$work" "tools/fuzz/corpus/$t" "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix=".build/fuzz-artifacts/$t-" > "$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    secs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo "$seconds")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    crashes=0
    if [ $rc -ne 0 ]; then
        crashes=1; status=1
        mkdir -p "tools/fuzz/found/$t"
        for a in .build/fuzz-artifacts/"$t"-*; do [ -f "$a" ] && cp "$a" "tools/fuzz/found/$t/"; done
        echo "[fuzz] $t FAILED (exit $rc); log $log, inputs copied to tools/fuzz/found/$t/:" >&2
        grep -E "ERROR|Fatal error|SUMMARY|==[0-9]+==" "$log" | head -5 >&2
    fi
    printf '%-15s %10s execs %6s s  cov %6s  crashes %d\n' "$t" "$execs" "$secs" "$cov" "$crashes"
done
rm -f /dev/shm/anchorkv-fuzz-* 2>/dev/null || true  # the targets' scratch files
exit $status
