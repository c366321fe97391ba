#!/usr/bin/env python3
"""Generate the LLM golden files in Tests/LLMTests/Goldens/ with the float64 reference.

    python3 tools/reference/make_llm_goldens.py [--model PATH] [--skip-tiny]

Writes smollm2-logits.json, smollm2-custom.json, smollm2-custom-lora.safetensors,
(via make_tiny_llama.py) tiny-llama/ + tiny-logits.json, and MANIFEST.txt.
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
from golden_io import default_model_path, r6, sha256  # noqa: E402
from llama_ref import LoRA, gguf_tokenizer, load_gguf, round_to_bf16, write_safetensors  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GOLDENS = os.path.join(ROOT, "Tests", "LLMTests", "Goldens")
DEFAULT_MODEL = default_model_path()

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user: str) -> str:
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


PROMPTS = [
    ("plain", "Once upon a time, in a small village at the edge of a great forest, there lived a"),
    ("chat", chatml("What is the capital of France?")),
    ("code", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5\nprint(add(10, 32))  # prints"),
    ("long", "Photosynthesis is the process by which green plants, algae and some bacteria convert "
             "light energy into chemical energy. During photosynthesis, light energy is captured by "
             "chlorophyll and used to convert water, carbon dioxide and minerals into oxygen and "
             "energy-rich organic compounds. The process takes place mainly in the leaves of plants, "
             "inside small structures called chloroplasts. It has two main stages: the light-dependent "
             "reactions, which happen in the thylakoid membranes and produce ATP and NADPH, and the "
             "Calvin cycle, which happens in the stroma and uses that energy to fix carbon dioxide into "
             "sugars. Almost all life on Earth depends on photosynthesis, either directly or indirectly, "
             "because it is the main source of the oxygen in the atmosphere. In this article, we will"),
]

N_GREEDY = 20
TOP_K = 16
SUBSET_STRIDE = 64


def step_entry(logits: np.ndarray) -> dict:
    order = np.argsort(-logits, kind="stable")[:TOP_K]
    return {
        "top_ids": [int(i) for i in order],
        "top_logits": r6(logits[order]),
        "subset_logits": r6(logits[0::SUBSET_STRIDE]),
        "margin": r6(logits[order[0]] - logits[order[1]]),
    }


def make_logits_golden(model, tok, path):
    out = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "reference": "tools/reference/llama_ref.py float64, attn_q/attn_k un-permuted to HF order, rotate-half RoPE",
        "top_k": TOP_K, "subset_stride": SUBSET_STRIDE, "n_greedy": N_GREEDY,
        "prompts": [],
    }
    summary = []
    for name, text in PROMPTS:
        ids = tok.encode(text).ids
        t0 = time.time()
        new, logits, last_hidden = model.greedy(ids, N_GREEDY)
        steps = [step_entry(lg) for lg in logits]
        margins = [float(np.sort(lg)[-1] - np.sort(lg)[-2]) for lg in logits]
        out["prompts"].append({
            "name": name, "text": text, "prompt_ids": ids, "greedy_ids": new,
            "greedy_text": tok.decode(new, skip_special_tokens=False),
            "min_margin": r6(min(margins[:N_GREEDY])),
            "final_hidden_last": r6(last_hidden),
            "steps": steps,
        })
        summary.append((name, len(ids), min(margins[:N_GREEDY]), int(np.argmin(margins[:N_GREEDY])),
                        margins[N_GREEDY], time.time() - t0, tok.decode(new, skip_special_tokens=False)))
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    for s in summary:
        print(f"  [{s[0]}] prompt_len={s[1]} min_margin(steps0..19)={s[2]:.4f} at step {s[3]} "
              f"(step20 margin {s[4]:.4f}) {s[5]:.1f}s\n      greedy: {s[6]!r}")
    return out


# ---------------------------------------------------------------------------
# Custom forward: positions 1..12, bidirectional, embedding additions, LoRA
# ---------------------------------------------------------------------------

CUSTOM_TEXT = "The cat sat on the mat and looked out at the rain."
CUSTOM_SEED = 1234
LORA_RANK = 4
LORA_SCALE = 2.0
ADD_ROWS = (3, 7)


def custom_inputs(model, tok):
    cfg = model.cfg
    ids = tok.encode(CUSTOM_TEXT).ids
    assert len(ids) >= 12, ids
    ids = ids[:12]
    rng = np.random.default_rng(CUSTOM_SEED)
    adds = {r: rng.normal(0.0, 0.02, cfg.hidden_size).astype(np.float32) for r in ADD_ROWS}
    qd = cfg.num_heads * cfg.head_dim
    kvd = cfg.num_kv_heads * cfg.head_dim
    qA, qB, vA, vB = [], [], [], []
    for _ in range(cfg.num_layers):
        qA.append(round_to_bf16(rng.normal(0.0, 0.02, (cfg.hidden_size, LORA_RANK)).astype(np.float32)))
        qB.append(round_to_bf16(rng.normal(0.0, 0.02, (LORA_RANK, qd)).astype(np.float32)))
        vA.append(round_to_bf16(rng.normal(0.0, 0.02, (cfg.hidden_size, LORA_RANK)).astype(np.float32)))
        vB.append(round_to_bf16(rng.normal(0.0, 0.02, (LORA_RANK, kvd)).astype(np.float32)))
    lora = LoRA(scale=LORA_SCALE, q_A=qA, q_B=qB, v_A=vA, v_B=vB)
    return ids, adds, lora


def run_custom(model, ids, adds, lora):
    positions = np.arange(1, 13)
    return model.forward(ids, positions=positions, causal=False, embed_additions=adds, lora=lora,
                         capture_kv=True, logits_rows=[0, 11])


CAPTURE_LAYERS = (0, 14, 29)
# RoPE is relative: shifting every position by a constant (0..11 -> 1..12) leaves the output
# unchanged (exactly, up to rounding).  This variant uses non-uniformly spaced positions so an
# engine that ignores explicit position ids fails it.
GAP_POSITIONS = [1, 2, 3, 4, 5, 6, 20, 21, 22, 23, 24, 40]


def make_custom_golden(model, tok, json_path, lora_path):
    from safetensors.numpy import load_file

    ids, adds, lora = custom_inputs(model, tok)
    tensors = {}
    for i in range(model.cfg.num_layers):
        tensors[f"layers.{i}.q_proj.lora_A"] = ("F32", lora.q_A[i])
        tensors[f"layers.{i}.q_proj.lora_B"] = ("F32", lora.q_B[i])
        tensors[f"layers.{i}.v_proj.lora_A"] = ("F32", lora.v_A[i])
        tensors[f"layers.{i}.v_proj.lora_B"] = ("F32", lora.v_B[i])
    # own writer: deterministic header (safetensors' Rust writer orders __metadata__ randomly)
    write_safetensors(lora_path, tensors, metadata={"rank": str(LORA_RANK), "scale": str(LORA_SCALE),
                                            "targets": "q_proj,v_proj",
                                            "convention": "delta = scale * (x @ A) @ B; A [in, rank], B [rank, out]; HF row order"})
    back = load_file(lora_path)
    assert all(np.array_equal(back[k], v[1]) for k, v in tensors.items())
    res = run_custom(model, ids, adds, lora)
    out = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "text": CUSTOM_TEXT, "token_ids": ids, "positions": list(range(1, 13)),
        "attention": "bidirectional",
        "embedding_additions": {str(r): [float(str(v)) for v in adds[r]] for r in ADD_ROWS},
        "embedding_additions_note": "float32 values; added to the token embedding rows (0-based) before layer 0",
        "lora": {"file": os.path.basename(lora_path), "rank": LORA_RANK, "scale": LORA_SCALE,
                 "targets": ["q_proj", "v_proj"], "layers": "all",
                 "formula": "q += scale * (x_norm @ q_A) @ q_B; v += scale * (x_norm @ v_A) @ v_B (before RoPE, HF row order)"},
        "final_hidden": [r6(row) for row in res["hidden"]],
        "logits_subset_rows": [0, 11],
        "logits_subset_stride": SUBSET_STRIDE,
        "logits_subset": [r6(row[0::SUBSET_STRIDE]) for row in res["logits"]],
        "capture_layers": list(CAPTURE_LAYERS),
        "captured_k_pre_rope": {str(l): [r6(row) for row in res["captures"][l][0]] for l in CAPTURE_LAYERS},
        "captured_v": {str(l): [r6(row) for row in res["captures"][l][1]] for l in CAPTURE_LAYERS},
        "capture_note": "K = k_proj output before RoPE (no LoRA on k); V = v_proj output incl. LoRA delta; "
                        "shape [12, 192]: rows = tokens, columns = kv_head*64 + dim in HF (un-permuted) order",
    }
    gap = model.forward(ids, positions=np.asarray(GAP_POSITIONS), causal=False, embed_additions=adds,
                        lora=lora, logits_rows=[0, 11])
    out["position_variant"] = {
        "note": "same inputs (ids, additions, LoRA, bidirectional) but these positions; "
                "positions 1..12 alone cannot detect a constant position offset",
        "positions": GAP_POSITIONS,
        "final_hidden_rows": [0, 11],
        "final_hidden": [r6(gap["hidden"][0]), r6(gap["hidden"][11])],
        "logits_subset": [r6(row[0::SUBSET_STRIDE]) for row in gap["logits"]],
        "max_abs_logit_diff_vs_main": r6(np.abs(gap["logits"] - res["logits"]).max()),
    }
    with open(json_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"  custom: position variant changes logits by up to {np.abs(gap['logits'] - res['logits']).max():.4f}")
    return res


def write_manifest():
    lines = ["# sha256 of every golden file in this folder.",
             "# Generated by: python3 tools/reference/make_llm_goldens.py",
             "#   (smollm2-*.json / smollm2-custom-lora.safetensors from models/SmolLM2-135M-Instruct.Q4_1.gguf;",
             "#    tiny-llama/ and tiny-logits.json via tools/reference/make_tiny_llama.py, called by it)",
             "# Reference: tools/reference/llama_ref.py (float64 numpy); versions in tools/reference/requirements.txt",
             ""]
    for dirpath, _, files in sorted(os.walk(GOLDENS)):
        for fn in sorted(files):
            if fn in ("MANIFEST.txt", ".keep"):
                continue
            p = os.path.join(dirpath, fn)
            lines.append(f"{sha256(p)}  {os.path.relpath(p, GOLDENS)}")
    with open(os.path.join(GOLDENS, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    os.makedirs(GOLDENS, exist_ok=True)
    t0 = time.time()
    tok = gguf_tokenizer(args.model)
    assert tok.encode("Hello world").ids == [19556, 905]
    model = load_gguf(args.model)
    print(f"loaded {args.model} in {time.time() - t0:.1f}s")
    p = os.path.join(GOLDENS, "smollm2-logits.json")
    make_logits_golden(model, tok, p)
    print(f"wrote {p} ({os.path.getsize(p)} bytes)")
    pj = os.path.join(GOLDENS, "smollm2-custom.json")
    pl = os.path.join(GOLDENS, "smollm2-custom-lora.safetensors")
    make_custom_golden(model, tok, pj, pl)
    print(f"wrote {pj} ({os.path.getsize(pj)} bytes), {pl} ({os.path.getsize(pl)} bytes)")
    if not args.skip_tiny:
        import make_tiny_llama
        make_tiny_llama.main()
    write_manifest()
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
