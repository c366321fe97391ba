#!/usr/bin/env bash
# Answer quality of every system on the held-out split (docs/quality.md).
#   bash tools/eval/run_quality.sh [SYSTEM ...]     systems: anchors-r5 anchors-r15 closed-book closed-book-ft full-base full-ft sac-r5 sac-r15 (default: all)
# Env: PER_TASK (questions per task, default all), THREADS (default 2), DATA (default data/qa/test.jsonl),
#      OUT (default docs/bench/quality). Each system writes OUT/<system>.json (summary) and
#      OUT/<system>.predictions.jsonl; tools/eval/quality_table.py turns them into the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
DATA=${DATA:-data/qa/test.jsonl}
OUT=${OUT:-docs/bench/quality}
THREADS=${THREADS:-2}
BIN=.build/release/anchorkv-bench
[ -f "$DATA" ] || { echo "missing $DATA: run python3 tools/data/prepare_qa.py first" >&2; exit 1; }
[ -x "$BIN" ] || swift build -c release --product anchorkv-bench
mkdir -p "$OUT"
limit=(); [ -n "${PER_TASK:-}" ] && limit=(--per-task "$PER_TASK")
systems=("$@"); [ ${#systems[@]} -eq 0 ] && systems=(closed-book closed-book-ft anchors-r5 anchors-r15 full-base full-ft sac-r5 sac-r15)
for s in "${systems[@]}"; do
    case "$s" in
        anchors-r5)      args=(--system sac --ratio 5 --no-adapter) ;;
        anchors-r15)     args=(--system sac --ratio 15 --no-adapter) ;;
        sac-r5)          args=(--system sac --ratio 5 --adapter config/adapters/smollm2-135m-sac-r5.safetensors) ;;
        sac-r15)         args=(--system sac --ratio 15 --adapter config/adapters/smollm2-135m-sac-r15.safetensors) ;;
        full-ft)         args=(--system full --lora config/adapters/smollm2-135m-fullft-lora.safetensors) ;;
        full-base)       args=(--system full) ;;
        closed-book)     args=(--system closed-book) ;;
        closed-book-ft)  args=(--system closed-book --lora config/adapters/smollm2-135m-fullft-lora.safetensors) ;;
        *) echo "unknown system $s" >&2; exit 2 ;;
    esac
    echo "[quality] $s" >&2
    "$BIN" eval --data "$DATA" "${args[@]}" "${limit[@]}" --threads "$THREADS" --max-tokens 32 \
        --out "$OUT/$s.predictions.jsonl" --json > "$OUT/$s.json.partial"
    mv "$OUT/$s.json.partial" "$OUT/$s.json"
done
