#!/usr/bin/env bash
# Prepares this machine for training: the git-ignored .venv with tools/sac/requirements.txt,
# the default model (tools/setup.sh) and the QA/LM data (tools/data/prepare_qa.py).
# Safe to run twice. Then: setsid nohup bash tools/sac/campaign.sh > /dev/null 2>&1 < /dev/null &
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/setup.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
# --no-deps: the +cpu wheel is the whole of torch here; its pure-Python deps are listed below.
.venv/bin/pip install --quiet --no-deps -r tools/sac/requirements.txt
.venv/bin/pip install --quiet filelock typing-extensions sympy networkx jinja2 fsspec pyyaml tqdm
[ -f data/qa/train.jsonl ] && [ -f data/lm/train.jsonl ] || python3 tools/data/prepare_qa.py
.venv/bin/python -c "import torch; print('[setup_train] torch', torch.__version__, torch.backends.cpu.get_cpu_capability())"
