#!/usr/bin/env bash
# The default model's training campaign, one run after another in one background process:
#   1. Full-FT LoRA (full context): the fair upper bound and the distillation teacher
#   2. SAC r=5, distilled from (1)
#   3. SAC r=15, warm-started from (2), distilled from (1)
# Each run resumes from its committed checkpoint (tools/sac/runs/NAME/ckpt.pt) and exports its
# adapter, config, loss and dev CSVs to config/adapters/ at every checkpoint; a finished run is
# skipped. Stop with `kill -TERM <pid of train.py>` (it checkpoints after the current step) and
# the campaign stops with it. Log: tools/sac/runs/NAME/train.log.
#   setsid nohup bash tools/sac/campaign.sh > /dev/null 2>&1 < /dev/null &
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ADAPTERS=config/adapters
RUNS=tools/sac/runs
TEACHER=$ADAPTERS/smollm2-135m-fullft-lora.safetensors
EXTRA=(${TRAIN_ARGS:-})   # e.g. TRAIN_ARGS="--device cuda" on a GPU machine

finished() { [ -f "$RUNS/$1/ckpt.pt" ] && "$PY" -c "import sys, torch; sys.exit(0 if torch.load('$RUNS/$1/ckpt.pt', weights_only=False)['state'].get('done') else 1)"; }

run() {
  local name=$1; shift
  mkdir -p "$RUNS/$name"
  if finished "$name"; then echo "[campaign] $name finished earlier"; return 0; fi
  echo "[campaign] $name: $(date -u +%FT%TZ)" >> "$RUNS/$name/train.log"
  nice -n 5 "$PY" tools/sac/train.py "$@" --out "$RUNS/$name" --resume "${EXTRA[@]}" >> "$RUNS/$name/train.log" 2>&1
  finished "$name"   # non-zero when it stopped early (signal, budget, crash): the campaign stops too
}

run fullft --full-ft --dev-at-start --dev-every 300 --export $TEACHER || exit 0
run r5 --ratio 5 --dev-at-start --teacher $TEACHER --export $ADAPTERS/smollm2-135m-sac-r5.safetensors || exit 0
run r15 --ratio 15 --teacher $TEACHER --init-from $RUNS/r5/ckpt.pt --stage1-steps 0 \
    --export $ADAPTERS/smollm2-135m-sac-r15.safetensors || exit 0
