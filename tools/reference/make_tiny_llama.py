#!/usr/bin/env python3
"""Create a tiny random HF-format Llama (llama3 rope scaling, tied embeddings, mixed
F32/F16/BF16 safetensors) and its reference logits.

    python3 tools/reference/make_tiny_llama.py

Writes Tests/LLMTests/Goldens/tiny-llama/{config.json, model.safetensors, tokenizer.json}
and Tests/LLMTests/Goldens/tiny-logits.json.  The logits are computed by loading the
written files back with llama_ref.load_hf_dir (so exactly the stored, rounded weights).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import r6  # noqa: E402
from llama_ref import (LlamaConfig, load_hf_dir, read_safetensors, rope_inv_freq,  # noqa: E402
                       safetensors_dtypes, write_safetensors)

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GOLDENS = os.path.join(ROOT, "Tests", "LLMTests", "Goldens")
OUT_DIR = os.path.join(GOLDENS, "tiny-llama")

SEED = 20240607
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"

TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. A tiny llama walks along the mountain path.
Hello, world! Hello, tiny llama. The llama eats grass and drinks water from the river.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Code: def f(x): return x * 2
In the morning the sun rises; in the evening the sun sets. Rain falls, rivers flow.
She sells sea shells by the sea shore. Peter Piper picked a peck of pickled peppers.
Tokenizers split text into pieces, and models predict the next piece of the text.
"""

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}

# dtype of every stored tensor (mixed on purpose)
def tensor_dtype(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "BF16"
    if name == "model.norm.weight":
        return "F16"
    if "layernorm" in name:
        return "F32" if ".0." in name else "BF16"
    if ".0.self_attn." in name:
        return "F16"
    if ".0.mlp." in name:
        return "BF16"
    if ".1.self_attn." in name:
        return "F32"
    return "BF16" if "down_proj" in name else "F32"   # layer 1 mlp: gate/up F32, down BF16


PROMPTS = [
    BOS + "The quick brown fox jumps over the lazy dog.",
    "Hello, tiny llama! Numbers 123 and code: def f(x): return x * 2",
]
N_GREEDY = 10


def train_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=298, show_progress=False, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TRAIN_TEXT], trainer=trainer)
    tok.add_special_tokens([AddedToken(BOS, special=True, normalized=False),
                            AddedToken(EOS, special=True, normalized=False)])
    return tok


def make_weights(cfg: dict, vocab: int) -> dict:
    rng = np.random.default_rng(SEED)
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    w = {"model.embed_tokens.weight": rng.normal(0, 0.05, (vocab, H))}
    for i in range(L):
        b = f"model.layers.{i}."
        w[b + "input_layernorm.weight"] = 1.0 + rng.normal(0, 0.1, H)
        w[b + "post_attention_layernorm.weight"] = 1.0 + rng.normal(0, 0.1, H)
        w[b + "self_attn.q_proj.weight"] = rng.normal(0, 0.05, (nh * d, H))
        w[b + "self_attn.k_proj.weight"] = rng.normal(0, 0.05, (nkv * d, H))
        w[b + "self_attn.v_proj.weight"] = rng.normal(0, 0.05, (nkv * d, H))
        w[b + "self_attn.o_proj.weight"] = rng.normal(0, 0.05, (H, nh * d))
        w[b + "mlp.gate_proj.weight"] = rng.normal(0, 0.05, (I, H))
        w[b + "mlp.up_proj.weight"] = rng.normal(0, 0.05, (I, H))
        w[b + "mlp.down_proj.weight"] = rng.normal(0, 0.05, (H, I))
    w["model.norm.weight"] = 1.0 + rng.normal(0, 0.1, H)
    return {k: (tensor_dtype(k), v.astype(np.float32)) for k, v in w.items()}


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    tok = train_tokenizer()
    vocab = tok.get_vocab_size()
    cfg = dict(CONFIG, vocab_size=vocab, bos_token_id=tok.token_to_id(BOS), eos_token_id=tok.token_to_id(EOS))
    tok.save(os.path.join(OUT_DIR, "tokenizer.json"))
    with open(os.path.join(OUT_DIR, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(OUT_DIR, "model.safetensors"), make_weights(cfg, vocab),
                      metadata={"format": "pt"})

    # cross-check our reader against safetensors.numpy for the non-BF16 tensors
    from safetensors import safe_open
    st_path = os.path.join(OUT_DIR, "model.safetensors")
    dts = safetensors_dtypes(st_path)
    mine = read_safetensors(st_path)
    with safe_open(st_path, framework="numpy") as f:
        for name in f.keys():
            if dts[name] != "BF16":
                assert np.array_equal(f.get_tensor(name).astype(np.float32), mine[name]), name

    model, tok2 = load_hf_dir(OUT_DIR)
    c = model.cfg
    plain = rope_inv_freq(LlamaConfig(**{**c.__dict__, "rope_scaling": None}))
    scaled = model.inv_freq
    changed = int(np.sum(~np.isclose(plain, scaled, rtol=0, atol=0)))
    assert changed > 0, "llama3 rope scaling did not change any frequency"

    prompts = []
    for text in PROMPTS:
        ids = tok2.encode(text).ids
        full = model.forward(ids, logits_rows="all")["logits"]      # [T, V], causal
        new, logits, _ = model.greedy(ids, N_GREEDY)
        assert np.allclose(logits[0], full[-1], atol=1e-10)
        margins = [float(np.sort(l)[-1] - np.sort(l)[-2]) for l in [full[-1]] + logits[1:N_GREEDY]]
        prompts.append({
            "text": text, "prompt_ids": ids,
            "prompt_logits": [r6(row) for row in full],
            "greedy_ids": new,
            "greedy_logits": [r6(l) for l in logits[1:N_GREEDY + 1]],
            "min_margin": r6(min(margins)),
        })
        print(f"  tiny prompt {len(ids)} tokens, greedy {new}, min greedy margin {min(margins):.5f}")
    out = {
        "model_dir": "tiny-llama",
        "tensor_dtypes": dts,
        "rope_inv_freq_unscaled": r6(plain), "rope_inv_freq_llama3": r6(scaled),
        "prompts": prompts,
        "note": "prompt_logits[t] = logits at prompt position t (causal, positions 0..T-1); "
                "prompt_logits[T-1] predicts greedy_ids[0]; greedy_logits[i] = logits after feeding "
                "greedy_ids[i] (predicts greedy_ids[i+1]). Tokenizer adds no BOS automatically; "
                "the first prompt contains <|begin_of_text|> literally.",
    }
    p = os.path.join(GOLDENS, "tiny-logits.json")
    with open(p, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"  rope freqs changed by llama3 scaling: {changed}/{len(plain)}")
    print(f"wrote {OUT_DIR} (vocab {vocab}) and {p} ({os.path.getsize(p)} bytes)")


if __name__ == "__main__":
    main()
