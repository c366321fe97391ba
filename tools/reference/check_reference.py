#!/usr/bin/env python3
"""Sanity checks of the reference (not needed to regenerate goldens).

    python3 tools/reference/check_reference.py

1. Tokenizer: "Hello world" -> [19556, 905].
2. RoPE layout: un-permuted weights + rotate-half RoPE == GGUF-order weights + interleaved
   RoPE (to ~1e-12), while GGUF-order weights + rotate-half RoPE gives different output.
3. KV-cache decoding == one full causal forward over prompt + generated tokens.
4. float32 run of the same code vs float64 along the golden greedy paths and the custom forward
   (max |logit diff|, hidden diffs, whether every f32 argmax agrees).
5. The stored goldens agree with a fresh f64 run (recomputes everything).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_llm_goldens as G  # noqa: E402
from llama_ref import KVCache, gguf_tokenizer, load_gguf, load_hf_dir  # noqa: E402


def main():
    t0 = time.time()
    tok = gguf_tokenizer(G.DEFAULT_MODEL)
    assert tok.encode("Hello world").ids == [19556, 905]
    print("1. tokenizer: 'Hello world' -> [19556, 905] OK")
    m = load_gguf(G.DEFAULT_MODEL)
    print(f"   load {time.time() - t0:.1f}s")

    chat = G.PROMPTS[1][1]
    ids = tok.encode(chat).ids
    new, logits, _ = m.greedy(ids, 20)
    print("   chat greedy:", repr(tok.decode(new, skip_special_tokens=False)))

    # 2. permutation claim
    raw = load_gguf(G.DEFAULT_MODEL, unpermute=False)
    raw.rope_interleaved = True
    l_int = raw.forward(ids + new, logits_rows="all")["logits"]
    l_ref = m.forward(ids + new, logits_rows="all")["logits"]
    print(f"2. GGUF order + interleaved RoPE vs un-permuted + rotate-half: max |dlogit| = "
          f"{np.abs(l_int - l_ref).max():.3e}")
    raw.rope_interleaved = False
    new_bad, logits_bad, _ = raw.greedy(ids, 20)
    print(f"   GGUF order + rotate-half (wrong): greedy {tok.decode(new_bad, skip_special_tokens=False)!r}, "
          f"step-0 max |dlogit| = {np.abs(logits_bad[0] - logits[0]).max():.3f}")
    del raw

    # 3. cache vs full
    full = l_ref[len(ids) - 1:]
    inc = np.stack(logits)
    print(f"3. KV cache vs full forward: max |dlogit| = {np.abs(full - inc).max():.3e}")

    # 4/5. f32 vs f64 and golden reproduction
    m32 = m.astype(np.float32)
    gold = json.load(open(os.path.join(G.GOLDENS, "smollm2-logits.json")))
    worst = 0.0
    for p in gold["prompts"]:
        l64, h64 = m.teacher_forced_logits(p["prompt_ids"], p["greedy_ids"])
        l32, h32 = m32.teacher_forced_logits(p["prompt_ids"], p["greedy_ids"])
        d = max(float(np.abs(a - b.astype(np.float64)).max()) for a, b in zip(l64, l32))
        dh = float(np.abs(h64 - h32).max())
        agree = all(int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(l64, l32))
        g = max(float(np.abs(np.asarray(s["subset_logits"]) - l[0::64]).max()) for s, l in zip(p["steps"], l64))
        gh = float(np.abs(np.asarray(p["final_hidden_last"]) - h64).max())
        worst = max(worst, d)
        print(f"4. [{p['name']}] f32 vs f64: max |dlogit| {d:.3e}, max |dhidden_last| {dh:.3e}, "
              f"argmax agree {agree}; golden vs recompute: subset {g:.1e}, hidden {gh:.1e}")
    ids12, adds, lora = G.custom_inputs(m, tok)
    r64 = G.run_custom(m, ids12, adds, lora)
    r32 = G.run_custom(m32, ids12, adds, lora)
    print(f"4. [custom] f32 vs f64: logits rows 0,11 {np.abs(r64['logits'] - r32['logits']).max():.3e}, "
          f"hidden {np.abs(r64['hidden'] - r32['hidden']).max():.3e}, "
          f"K/V captures {max(np.abs(a[0] - b[0]).max() for a, b in zip(r64['captures'], r32['captures'])):.3e}"
          f"/{max(np.abs(a[1] - b[1]).max() for a, b in zip(r64['captures'], r32['captures'])):.3e}")
    cg = json.load(open(os.path.join(G.GOLDENS, "smollm2-custom.json")))
    print(f"5. [custom] golden vs recompute hidden: "
          f"{np.abs(np.asarray(cg['final_hidden']) - r64['hidden']).max():.1e}")
    # effect sizes of the custom features (so a test cannot pass while ignoring them)
    base = m.forward(ids12, positions=np.arange(1, 13), causal=False, logits_rows=[0, 11])
    print(f"   custom features change logits by up to {np.abs(base['logits'] - r64['logits']).max():.3f}")
    del m, m32

    tm, ttok = load_hf_dir(os.path.join(G.GOLDENS, "tiny-llama"))
    tm32 = tm.astype(np.float32)
    tg = json.load(open(os.path.join(G.GOLDENS, "tiny-logits.json")))
    for p in tg["prompts"]:
        seq = p["prompt_ids"] + p["greedy_ids"]
        a = tm.forward(seq, logits_rows="all")["logits"]
        b = tm32.forward(seq, logits_rows="all")["logits"]
        gp = np.abs(np.asarray(p["prompt_logits"]) - a[:len(p["prompt_ids"])]).max()
        print(f"4. [tiny] f32 vs f64 max |dlogit| {np.abs(a - b).max():.3e}; golden vs recompute {gp:.1e}")
    print(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
