#!/usr/bin/env bash
# Launch the three default-model runs (SAC r=5, SAC r=15, Full-FT LoRA) in parallel on CPU,
# 1 torch thread each, niced, each stopping and exporting by STOP_AT (UTC, HH:MM, next
# occurrence).  Logs: data/runs/<name>/train.log; adapters + config + loss log: config/adapters/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/tmp/torchvenv/bin/python}
STOP_AT=${STOP_AT:-00:58}
now=$(date -u +%s); stop=$(date -u -d "$STOP_AT" +%s); [ "$stop" -gt "$now" ] || stop=$((stop + 86400))
BUDGET=$(( (stop - now) / 60 - 1 ))
COMMON=(--rank 16 --threads 1 --batch 4 --warmup 3 --lr1 1e-3 --lr2 5e-4 --max-context-tokens 510
        --stage1-max-tokens 680 --ckpt-every 2 --time-budget-min "$BUDGET" --stage1-frac 0.2)
mkdir -p config/adapters
launch() {
  local name=$1; shift
  mkdir -p "data/runs/$name"
  local resume=(); [ -f "data/runs/$name/ckpt.pt" ] && resume=(--resume)
  # setsid: the runs outlive the shell (and the agent) that started them.
  setsid nohup nice -n 10 "$PY" tools/sac/train.py "$@" "${COMMON[@]}" "${resume[@]}" --out "data/runs/$name" \
    >> "data/runs/$name/train.log" 2>&1 < /dev/null &
  echo "$name pid $! budget ${BUDGET} min"
}
launch r5 --ratio 5 --export config/adapters/smollm2-135m-sac-r5.safetensors
launch r15 --ratio 15 --export config/adapters/smollm2-135m-sac-r15.safetensors
launch fullft --full-ft --export config/adapters/smollm2-135m-fullft-lora.safetensors
