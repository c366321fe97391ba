#!/usr/bin/env python3
"""Write a tiny SAC checkpoint in the authors' torch.save layout (needs torch; run once).

    pip install torch numpy        # only for this script; nothing else in the project needs torch
    python3 tools/sac/make_synthetic_checkpoint.py

Writes tools/sac/testdata/instruction_adapter_tiny.pt for the tiny HF model at
Tests/LLMTests/Goldens/tiny-llama (hidden 64, 2 layers, 4 heads x 16, 2 kv heads x 16):
rank 4, ratio 51 (mem_size 10), bf16 tensors, numpy seed 51051, and
tools/sac/testdata/instruction_adapter_tiny.expected.npz with the same values as float32
(taken from the bf16 torch tensors, so bit-exact).

Layout, as in the spec's "Checkpoint format": a dict (torch.save, zip format) with
role_tokens [10, 64], special_tokens [2, 64],
model.model.layers.{i}.self_attn.q_proj.lora_A [64, 4], ...q_proj.lora_B [4, 64],
model.model.layers.{i}.self_attn.v_proj.lora_A [64, 4], ...v_proj.lora_B [4, 32].
To exercise the converter's unpickler: role_tokens and special_tokens are saved as
nn.Parameter (requires_grad, torch._utils._rebuild_parameter), and layer 1's q_proj.lora_A is a
non-contiguous transposed view (stride (1, 64)); everything else is a plain contiguous tensor.
"""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "testdata")
HIDDEN, LAYERS, Q_DIM, KV_DIM, RANK, RATIO = 64, 2, 64, 32, 4, 51
MEM = 510 // RATIO
SEED = 51051


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    bf = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32)).to(torch.bfloat16)
    sd = {
        "role_tokens": torch.nn.Parameter(bf(rng.normal(0, 0.02, (MEM, HIDDEN)))),
        "special_tokens": torch.nn.Parameter(bf(rng.normal(0, 0.05, (2, HIDDEN)))),
    }
    bound = 1.0 / np.sqrt(HIDDEN)
    for i in range(LAYERS):
        p = f"model.model.layers.{i}.self_attn."
        qa = bf(rng.uniform(-bound, bound, (HIDDEN, RANK)))
        if i == 1:
            qa = qa.t().contiguous().t()   # same values, stride (1, HIDDEN)
            assert not qa.is_contiguous()
        sd[p + "q_proj.lora_A"] = qa
        sd[p + "q_proj.lora_B"] = bf(rng.normal(0, 0.02, (RANK, Q_DIM)))
        sd[p + "v_proj.lora_A"] = bf(rng.uniform(-bound, bound, (HIDDEN, RANK)))
        sd[p + "v_proj.lora_B"] = bf(rng.normal(0, 0.02, (RANK, KV_DIM)))
    path = os.path.join(OUT, "instruction_adapter_tiny.pt")
    torch.save(sd, path)
    expected = {k: v.detach().float().numpy() for k, v in sd.items()}
    np.savez(os.path.join(OUT, "instruction_adapter_tiny.expected.npz"), **expected)
    back = torch.load(path, weights_only=True)
    for k, v in sd.items():
        assert back[k].dtype == torch.bfloat16 and torch.equal(back[k], v.detach()), k
    print(f"wrote {path} ({os.path.getsize(path)} bytes), torch {torch.__version__}, {len(sd)} tensors")


if __name__ == "__main__":
    main()
