#!/usr/bin/env bash
# Quickstart, step 2: the test suite (the command CI runs after tools/setup.sh).
# Tests read committed goldens and the model installed by tools/setup.sh; nothing is
# downloaded here. ANCHORKV_REQUIRE_MODEL=1 turns "model missing" into a failure instead of a skip,
# ANCHORKV_REQUIRE_REDIS=1 the same for redis-server (the Redis Cluster tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export ANCHORKV_REQUIRE_MODEL="${ANCHORKV_REQUIRE_MODEL:-1}"
export ANCHORKV_REQUIRE_REDIS="${ANCHORKV_REQUIRE_REDIS:-1}"
# The crash, fault and hostile-file tests drive the real CLI binary, debug and release: build both first.
swift build --product anchorkv 2>&1 | tail -1
swift build -c release --product anchorkv 2>&1 | tail -1
swift test 2>&1 | tee /tmp/anchorkv-swift-test.log | grep -E "error|failed|passed after|Executed [0-9]+ tests, with" | tail -40
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "swift test failed (full log: /tmp/anchorkv-swift-test.log)" >&2; exit "$status"; }
# Python tool tests (numpy only; no torch, no network).
for t in tools/*/test_*.py; do
    [ -e "$t" ] || continue
    echo "[test] $t" >&2
    python3 "$t"
done
# One plain closing line for CI: XCTest's totals (the last "Executed" line is the sum over all
# suites), since swift test's final Swift Testing line counts only Swift Testing tests (none here).
# The line reads "Executed N tests, with F failures", or "... with S tests skipped and F failures"
# when a test was skipped (the BF16 checks on a CPU without AVX512_BF16).
pattern='Executed ([0-9]+) tests?, with (([0-9]+) tests? skipped and )?([0-9]+) failures?'
summary=$(grep -E "$pattern" /tmp/anchorkv-swift-test.log | tail -1)
total=$(sed -E "s/.*$pattern.*/\\1/" <<<"$summary")
skipped=$(sed -E "s/.*$pattern.*/\\3/" <<<"$summary")
failed=$(sed -E "s/.*$pattern.*/\\4/" <<<"$summary")
skipped=${skipped:-0}
[ -n "$total" ] && [ "$total" -gt 0 ] || { echo "no XCTest tests were executed" >&2; exit 1; }
echo "all tests passed" >&2
echo "$((total - failed - skipped)) passed, $failed failed, $skipped skipped"
