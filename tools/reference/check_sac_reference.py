#!/usr/bin/env python3
"""Sanity checks of sac_ref.py (not needed for regeneration; ~1-2 min on 2 cores).

    python3 tools/reference/check_sac_reference.py [--model PATH]

1. Past-KV path: the baseline encoding at r=1 (every token an anchor) followed by the decoder
   must equal one plain causal forward over encoder ids + question ids at positions 1..N+T.
2. Stored goldens vs a fresh run: step-0 logits of every case in sac-goldens.json.
3. Feature effect sizes on the one-window case (max |delta logit| at decoder step 0) when one
   ingredient is changed: no LoRA, no role tokens, [LM] at N+1 instead of N, causal encoder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama_ref import load_gguf  # noqa: E402
import sac_ref  # noqa: E402
from make_sac_goldens import DEFAULT_MODEL, GOLDENS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    t0 = time.time()
    model = load_gguf(args.model)
    g = json.load(open(os.path.join(GOLDENS, "sac-goldens.json")))
    cases = {c["name"]: c for c in g["cases"]}
    ok = True

    # 1. r=1 baseline == plain causal forward
    c = cases["no-adapter"]
    ids, q = c["encoder_ids"], c["decoder_ids"]
    enc = sac_ref.encode(model, ids, None, ratio=1)
    assert len(enc.positions) == len(ids)
    lg = sac_ref.decode_logits(model, enc, q, None)[0]
    full = model.forward(ids + q, positions=np.arange(1, len(ids) + len(q) + 1), causal=True)["logits"]
    d = float(np.abs(lg - full).max())
    print(f"1. r=1 baseline decoder vs one causal forward: max |diff| {d:.2e}")
    ok &= d < 1e-9

    # 2. goldens vs fresh run (step 0)
    adapters = {}
    for name, c in cases.items():
        ad = None
        if c["adapter"]:
            ad = adapters.setdefault(c["adapter"], sac_ref.read_adapter(os.path.join(GOLDENS, c["adapter"])))
        enc = sac_ref.encode(model, c["encoder_ids"], ad, c["ratio"])
        lg = sac_ref.decode_logits(model, enc, c["decoder_ids"], ad)[0]
        d = float(np.abs(lg[0::64] - np.asarray(c["logits"][0]["subset"])).max())
        print(f"2. {name}: stored step-0 subset vs fresh run max |diff| {d:.2e}")
        ok &= d < 1e-4

    # 3. effect sizes on one-window
    c = cases["one-window"]
    ad = adapters[c["adapter"]]
    ids, q = c["encoder_ids"], c["decoder_ids"]
    base = sac_ref.decode_logits(model, sac_ref.encode(model, ids, ad, 5), q, ad)[0]

    def variant(**kw):
        import copy
        a = copy.copy(ad)
        if kw.get("no_lora"):
            a.q_B = [np.zeros_like(b) for b in ad.q_B]
            a.v_B = [np.zeros_like(b) for b in ad.v_B]
        if kw.get("no_q_lora"):
            a.q_B = [np.zeros_like(b) for b in ad.q_B]
        if kw.get("no_role"):
            a.role_tokens = np.zeros_like(ad.role_tokens)
        enc = sac_ref.encode(model, ids, a, 5)
        if kw.get("lm_shift"):
            enc.n_context += 1
            lg = sac_ref.decode_logits(model, enc, q, a)[0]
            enc.n_context -= 1
            return lg
        return sac_ref.decode_logits(model, enc, q, a)[0]

    for name, kw in [("no LoRA", dict(no_lora=True)), ("no q LoRA", dict(no_q_lora=True)),
                     ("no role tokens", dict(no_role=True)), ("[LM] at N+1", dict(lm_shift=True))]:
        print(f"3. one-window, {name}: max |delta logit| {np.abs(variant(**kw) - base).max():.4f}")
    print(f"{'OK' if ok else 'FAILED'} in {time.time() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
