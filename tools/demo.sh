#!/usr/bin/env bash
# Quickstart, step 1: set up a fresh machine and run the main job.
# Installs the system libraries and the default model (tools/setup.sh), builds the release
# binary, then asks the default model a few questions with `anchorkv generate`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tools/setup.sh
echo "[demo] building anchorkv (release)" >&2
swift build -c release --product anchorkv 2>&1 | tail -1 >&2
bin=.build/release/anchorkv
for q in "What is the capital of France?" "Write one sentence about the sea." "List three prime numbers."; do
    echo ">>> $q"
    "$bin" generate --chat --prompt "$q" --max-tokens 64
done
