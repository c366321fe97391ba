#!/usr/bin/env bash
# Quickstart, step 1: set up a fresh machine and run the main job.
# Installs the system libraries and the default model (tools/setup.sh), builds the release
# binary, ingests the sample collection (tools/demo/corpus) into a local RocksDB store and
# answers questions from the stored KV, without re-reading the documents.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tools/setup.sh
echo "[demo] building anchorkv (release)" >&2
swift build -c release --product anchorkv 2>&1 | tail -1 >&2
bin=.build/release/anchorkv
# Two stores of the same collection: SAC at the configured ratio (5, with the shipped adapter)
# and the full, uncompressed KV (ratio 1); each question is answered from both, side by side.
# How close the SAC answers come depends on the shipped adapters' training (docs/quality.md).
questions=("Who built the third Eddystone lighthouse?" "When was the Gutenberg Bible printed?"
           "Which canal links the Danube to the Rhine?" "How long does a summer worker bee live?")
sac=data/demo-store full=data/demo-store-full
echo "[demo] ingesting tools/demo/corpus into $sac (configured ratio) and $full (--ratio 1)" >&2
"$bin" ingest --store "$sac" tools/demo/corpus
"$bin" ingest --store "$full" --ratio 1 tools/demo/corpus
"$bin" stats --store "$sac"
"$bin" stats --store "$full"
answer() { "$bin" query --store "$1" -k 2 --max-tokens 48 --json "$2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["answer"].strip())'; }
for q in "${questions[@]}"; do
    echo ">>> $q"
    echo "    SAC (compressed KV): $(answer "$sac" "$q")"
    echo "    full KV:             $(answer "$full" "$q")"
done
