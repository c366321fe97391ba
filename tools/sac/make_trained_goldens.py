#!/usr/bin/env python3
"""Golden for the torch trainer's exporter + encoder/decoder (tools/sac/train.py).

    .venv/bin/python tools/sac/make_trained_goldens.py [--model PATH] [--no-ref-check]

A seeded random rank-4 r=5 adapter (LoRA B non-zero) is exported with train.py's exporter
(BF16), read back, and train.py's torch encoder/decoder (float64) run on one ~240-token
context.  Writes to Tests/SACTests/Goldens/:
  torch-adapter-r5-rank4.safetensors   the exported adapter (what SACAdapter.load reads)
  torch-kv.safetensors                 anchor K (before RoPE) / V for a few layers, F32
  torch-goldens.json                   ids, positions, logits (first block + 3 teacher-forced steps)
Tests/SACTests/TorchExportTests.swift compares the Swift engine against these.  Unless
--no-ref-check, the same adapter is also run through the independent numpy reference
(tools/reference/sac_ref.py) and the differences are printed (and must be tiny).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import train as T  # noqa: E402
from golden_io import default_model_path, r6, sha256  # noqa: E402
from llama_ref import read_safetensors, write_safetensors  # noqa: E402
from make_sac_goldens import LIGHTHOUSE  # noqa: E402

GOLDENS = os.path.join(ROOT, "Tests", "SACTests", "Goldens")
RATIO, RANK, SEED = 5, 4, 4242
KV_LAYERS = [0, 14, 29]
QUESTION = "Who built the third Eddystone Lighthouse?"
N_FORCED = 3
TOP_K, STRIDE = 16, 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=default_model_path())
    ap.add_argument("--no-ref-check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    facts = T.model_facts(a.model)
    fp = T.model_fingerprint(a.model, facts)
    base = T.Base(a.model, "cpu", dtype=torch.float64)
    lay = T.Layout(T.gguf_tokenizer(a.model))
    # The A bound these goldens were drawn with (any seeded adapter serves; kept for byte-identical goldens).
    tr = T.Trainable(base, RANK, 2.0, RATIO, SEED, a_bound=1.0 / math.sqrt(base.H))
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():  # non-zero B and stronger role tokens so every trained part matters
        for B in tr.qB + tr.vB:
            B.copy_(torch.randn(*B.shape, generator=g, dtype=torch.float64) * 0.02)
        tr.role.mul_(2.0)
    args = types.SimpleNamespace(full_ft=False, bos_id=1, eos_id=2)
    adapter_name = "torch-adapter-r5-rank4.safetensors"
    apath = os.path.join(GOLDENS, adapter_name)
    T.export(apath, base, tr, args, facts, fp,
             f"tools/sac/make_trained_goldens.py: seeded random (seed {SEED}), exported by tools/sac/train.py")
    # Compute with exactly the stored (bf16-rounded) values.
    st = read_safetensors(apath)
    names = ([f"layers.{i}.q_proj.lora_A" for i in range(base.nl)] + [f"layers.{i}.q_proj.lora_B" for i in range(base.nl)]
             + [f"layers.{i}.v_proj.lora_A" for i in range(base.nl)] + [f"layers.{i}.v_proj.lora_B" for i in range(base.nl)]
             + ["role_tokens", "special_tokens"])
    tr.load([torch.from_numpy(st[n].astype(np.float64)) for n in names])

    ids = lay.context_ids(LIGHTHOUSE, 10**9)
    qs = lay.question_seg(QUESTION)
    with torch.no_grad():
        caps, apos = T.sac_encode(base, tr, ids)
        forced = []
        for _ in range(N_FORCED):
            h = T.sac_decode_hidden(base, tr, caps, apos, len(ids), qs + forced)
            forced.append(int(base.logits(h[-1]).argmax()))
        h = T.sac_decode_hidden(base, tr, caps, apos, len(ids), qs + forced)
        rows = base.logits(h[len(qs):len(qs) + N_FORCED + 1]).numpy()
    logits = []
    for r in rows:
        top = np.argsort(-r, kind="stable")[:TOP_K]
        logits.append({"top_ids": [int(i) for i in top], "top_values": r6(r[top]), "subset": r6(r[::STRIDE])})
    kv_name = "torch-kv.safetensors"
    write_safetensors(os.path.join(GOLDENS, kv_name),
                      {**{f"layer{l}.k": ("F32", caps[l][0].numpy()) for l in KV_LAYERS},
                       **{f"layer{l}.v": ("F32", caps[l][1].numpy()) for l in KV_LAYERS}},
                      metadata={"source": "tools/sac/make_trained_goldens.py"})
    out = {
        "generator": "tools/sac/make_trained_goldens.py (torch float64, tools/sac/train.py encoder/decoder)",
        "adapter": adapter_name, "adapter_sha256": sha256(apath), "base_model_fingerprint": fp,
        "ratio": RATIO, "text": LIGHTHOUSE, "question": QUESTION, "encoder_ids": ids, "n_context": len(ids),
        "anchor_positions": [int(p) for p in apos], "decoder_ids": qs, "decoder_start_position": len(ids),
        "kv_file": kv_name, "kv_layers": KV_LAYERS, "forced_ids": forced, "subset_stride": STRIDE,
        "logits": logits,
    }
    with open(os.path.join(GOLDENS, "torch-goldens.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"N={len(ids)} anchors={len(apos)} forced={forced} adapter {os.path.getsize(apath)} bytes")

    if not a.no_ref_check:
        import sac_ref
        from llama_ref import load_gguf
        m = load_gguf(a.model)
        ad = sac_ref.read_adapter(apath)
        enc = sac_ref.encode(m, ids, ad)
        dk = max(float(np.abs(enc.k[l] - caps[l][0].numpy()).max()) for l in range(base.nl))
        dv = max(float(np.abs(enc.v[l] - caps[l][1].numpy()).max()) for l in range(base.nl))
        ref = sac_ref.decode_logits(m, enc, qs, ad, forced_ids=forced)
        dl = max(float(np.abs(np.asarray(x) - r).max()) for x, r in zip(ref, rows))
        print(f"torch vs numpy reference (float64): K {dk:.2e} V {dv:.2e} logits {dl:.2e}")
        assert enc.positions == [int(p) for p in apos]
        assert dk < 1e-6 and dv < 1e-6 and dl < 1e-5, "torch trainer disagrees with sac_ref.py"


if __name__ == "__main__":
    main()
