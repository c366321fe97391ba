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
# and the full, uncompressed KV (ratio 1), so the answers can be compared. The shipped adapters
# are trained for ~500 examples only (docs/quality.md): expect the full-KV answers to be better.
questions=("Who built the third Eddystone lighthouse?" "When was the Gutenberg Bible printed?"
           "Which canal links the Danube to the Rhine?" "How long does a summer worker bee live?")
for spec in "data/demo-store:" "data/demo-store-full:--ratio 1"; do
    store=${spec%%:*}; read -r -a ratio_args <<<"${spec#*:}"
    echo "[demo] ingesting tools/demo/corpus into $store (${ratio_args[*]:-configured ratio})" >&2
    "$bin" ingest --store "$store" "${ratio_args[@]}" tools/demo/corpus
    "$bin" stats --store "$store"
    for q in "${questions[@]}"; do
        echo ">>> $q"
        "$bin" query --store "$store" -k 2 --max-tokens 48 "$q"
    done
done
