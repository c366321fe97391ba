"""Helpers shared by the golden generators: where the default model is, how floats are
rounded in golden JSON, and file digests for MANIFEST.txt."""
from __future__ import annotations

import hashlib
import os

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def default_model_path() -> str:
    """$ANCHORKV_SMOLLM2_GGUF, else /work/main/models/..., else the checkout's models/."""
    path = os.environ.get("ANCHORKV_SMOLLM2_GGUF", "/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        path = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path


def r6(x):
    """Round to 6 significant digits (recursively for arrays)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return float(f"{float(a):.6g}")
    return [r6(v) for v in a]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
