#!/usr/bin/env python3
"""Train SAC adapters (or the Full-FT LoRA upper bound) for the default model with PyTorch.

Implements the training recipe of ../shared/spec/SAC.md on SmolLM2-135M-Instruct (GGUF,
dequantized to fp32, attn_q/attn_k rows un-permuted to HF order by tools/reference/llama_ref.py,
so LoRA tensors are in the HF orientation the engine expects).

  encoder: windows of 510, global 1-based positions, bidirectional attention inside a window
           (one pass with a block-diagonal mask), LoRA on q/v (y = xW^T + scale*(xA)B),
           role_tokens[k] added to the k-th anchor's input embedding; keeps anchor K/V per layer
  decoder: frozen base model, causal, past = anchor K (rotated at the anchor's position) + V,
           input [LM] (special_tokens row 1) at position N, then the question segment at N+1...
  stage 1: LM continuation (first half compressed, loss on second half + eos)
  stage 2: QA, loss on answer tokens + eos only
  --full-ft: no compression; base + LoRA q/v on bos + header + context + question segment +
           answer, ordinary causal attention at positions 1.., loss on answer + eos.

Layout (metadata of the exported adapter): bos 1, eos 2, "### Context:\\n",
"\\n### Question:\\n", "\\n### Answer:\\n", each tokenized separately without special tokens.

Examples:
  python tools/sac/train.py --ratio 5 --out data/runs/r5 --time-budget-min 70 \\
      --export config/adapters/smollm2-135m-sac-r5.safetensors
  python tools/sac/train.py --full-ft --out data/runs/fullft --time-budget-min 70 \\
      --export config/adapters/smollm2-135m-fullft-lora.safetensors
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

from llama_ref import gguf_tokenizer, load_gguf, write_safetensors  # noqa: E402
from sac_ref import (ANSWER_PREFIX, CONTEXT_HEADER, QUESTION_PREFIX, WINDOW,  # noqa: E402
                     adapter_metadata, anchor_indices, model_facts, model_fingerprint, window_lengths)

LORA_FORMAT = "anchorkv.lora-adapter"


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

class Base:
    """Frozen Llama weights (fp32 torch tensors, W stored [in, out], HF row order)."""

    def __init__(self, path: str, device: str = "cpu", dtype=torch.float32):
        m = load_gguf(path, dtype=np.float64 if dtype == torch.float64 else np.float32)
        c = m.cfg
        self.cfg = c
        self.nl, self.H, self.nh, self.nkv, self.d = c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)
        self.embed = t(m.embed)
        self.lm_head = self.embed if m.lm_head is None else t(m.lm_head)
        self.final_norm = t(m.final_norm)
        self.layers = []
        for L in m.layers:
            self.layers.append({k: t(getattr(L, k)) for k in ("attn_norm", "ffn_norm", "wq", "wk", "wv", "wo", "wg", "wu", "wd")})
        self.eps = float(c.rms_norm_eps)
        self.inv_freq = torch.from_numpy(m.inv_freq.astype(np.float64)).to(device)
        self.device, self.dtype = device, dtype
        del m

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def cos_sin(self, pos):
        ang = pos.to(torch.float64)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([ang, ang], -1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    @staticmethod
    def rope(x, cos, sin):  # x [heads, T, d]
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(self, x, pos, mask, lora=None, prefix=None, capture_rows=None, kv_only_last=False):
        """x [T, H] input embeddings, pos [T] long, mask [T, P+T] bool (True = may attend).
        lora: Trainable or None.  prefix: per layer (K rotated [nkv, P, d], V [nkv, P, d]).
        capture_rows: rows whose per-layer K (before RoPE) and V [n, kv_dim] are returned.
        Returns (final-normed hidden or None, captures)."""
        T = x.shape[0]
        cos, sin = self.cos_sin(pos)
        caps = []
        g = self.nh // self.nkv
        for l, L in enumerate(self.layers):
            h = self.rms(x, L["attn_norm"])
            q = h @ L["wq"]
            k = h @ L["wk"]
            v = h @ L["wv"]
            if lora is not None:
                q = q + lora.scale * ((h @ lora.qA[l]) @ lora.qB[l])
                v = v + lora.scale * ((h @ lora.vA[l]) @ lora.vB[l])
            if capture_rows is not None:
                caps.append((k[capture_rows], v[capture_rows]))
            if kv_only_last and l == self.nl - 1:
                return None, caps
            q = self.rope(q.view(T, self.nh, self.d).transpose(0, 1), cos, sin)
            k = self.rope(k.view(T, self.nkv, self.d).transpose(0, 1), cos, sin)
            v = v.view(T, self.nkv, self.d).transpose(0, 1)
            if prefix is not None:
                k = torch.cat([prefix[l][0], k], 1)
                v = torch.cat([prefix[l][1], v], 1)
            k = k.repeat_interleave(g, 0)
            v = v.repeat_interleave(g, 0)
            o = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask)[0]
            x = x + o.transpose(0, 1).reshape(T, self.nh * self.d) @ L["wo"]
            h = self.rms(x, L["ffn_norm"])
            x = x + (F.silu(h @ L["wg"]) * (h @ L["wu"])) @ L["wd"]
        return self.rms(x, self.final_norm), caps

    def logits(self, h):
        return h @ self.lm_head.T


class Trainable:
    def __init__(self, base: Base, rank: int, scale: float, ratio: int | None, seed: int):
        g = torch.Generator().manual_seed(seed)
        H, dev = base.H, base.device
        qd, kvd = base.nh * base.d, base.nkv * base.d
        bound = 1.0 / math.sqrt(H)  # kaiming_uniform(a=sqrt 5) over fan_in = H
        dt = base.dtype
        u = lambda *s: ((torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_()
        z = lambda *s: torch.zeros(*s, device=dev, dtype=dt, requires_grad=True)
        self.rank, self.scale, self.ratio = rank, scale, ratio
        self.qA = [u(H, rank) for _ in range(base.nl)]
        self.qB = [z(rank, qd) for _ in range(base.nl)]
        self.vA = [u(H, rank) for _ in range(base.nl)]
        self.vB = [z(rank, kvd) for _ in range(base.nl)]
        self.role = self.special = None
        if ratio is not None:
            self.role = (torch.randn(WINDOW // ratio, H, generator=g, dtype=torch.float64) * 0.02).to(dev, dt).requires_grad_()
            e = base.embed
            self.special = (torch.randn(2, H, generator=g, dtype=torch.float64) * e.std().item()
                            + e.mean().item()).to(dev, dt).requires_grad_()

    def params(self):
        p = self.qA + self.qB + self.vA + self.vB
        return p + ([self.role, self.special] if self.role is not None else [])

    def state(self):
        return [p.detach().cpu().clone() for p in self.params()]

    def load(self, tensors):
        with torch.no_grad():
            for p, t in zip(self.params(), tensors):
                p.copy_(t)


# ----------------------------------------------------------------------------
# SAC encoder / decoder
# ----------------------------------------------------------------------------

def encoder_plan(N: int, ratio: int):
    """(anchor rows 0-based, role index per anchor, global positions, block mask [N, N])."""
    rows, kidx, blocks = [], [], []
    s = 0
    for L in window_lengths(N):
        loc = anchor_indices(L, ratio)
        rows += [s + i for i in loc]
        kidx += list(range(len(loc)))
        blocks.append(torch.ones(L, L, dtype=torch.bool))
        s += L
    return rows, kidx, torch.block_diag(*blocks) if len(blocks) > 1 else blocks[0]


def sac_encode(base: Base, tr: Trainable, ids):
    """Anchor K (before RoPE) / V per layer [n_anchors, kv_dim] and their 1-based positions."""
    dev = base.device
    N = len(ids)
    rows, kidx, mask = encoder_plan(N, tr.ratio)
    ids_t = torch.tensor(ids, device=dev)
    x = base.embed[ids_t]
    rows_t = torch.tensor(rows, device=dev)
    x = x.index_add(0, rows_t, tr.role[torch.tensor(kidx, device=dev)])
    pos = torch.arange(1, N + 1, device=dev)
    _, caps = base.forward(x, pos, mask.to(dev), lora=tr, capture_rows=rows_t, kv_only_last=True)
    return caps, rows_t + 1


def sac_decode_hidden(base: Base, tr: Trainable, caps, anchor_pos, N: int, dec_ids):
    """Decoder hidden states for [LM] + dec_ids at positions N, N+1, ... (frozen base)."""
    dev = base.device
    cos, sin = base.cos_sin(anchor_pos)
    P = anchor_pos.shape[0]
    prefix = []
    for K, V in caps:
        k = base.rope(K.view(P, base.nkv, base.d).transpose(0, 1), cos, sin)
        prefix.append((k, V.view(P, base.nkv, base.d).transpose(0, 1)))
    x = torch.cat([tr.special[1:2], base.embed[torch.tensor(dec_ids, device=dev, dtype=torch.long)]], 0)
    T = x.shape[0]
    pos = torch.arange(N, N + T, device=dev)
    mask = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], 1).to(dev)
    h, _ = base.forward(x, pos, mask, prefix=prefix)
    return h


# ----------------------------------------------------------------------------
# Data / layout
# ----------------------------------------------------------------------------

class Layout:
    def __init__(self, tok, bos=1, eos=2):
        self.tok, self.bos, self.eos = tok, bos, eos
        self.header = self.enc(CONTEXT_HEADER)
        self.qp = self.enc(QUESTION_PREFIX)
        self.ap = self.enc(ANSWER_PREFIX)

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False).ids

    def context_ids(self, text, max_tokens):
        ids = [self.bos] + self.header + self.enc(text)
        return ids[:max_tokens]

    def question_seg(self, q):
        return self.qp + self.enc(q) + self.ap


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def qa_loss(base, tr, lay, ex, args):
    """Cross-entropy (mean over answer tokens + eos) for one QA example; returns (loss, n)."""
    ctx = lay.context_ids(ex["context"], args.max_context_tokens)
    qs = lay.question_seg(ex["question"])
    ans = lay.enc(ex["answers"][0])[: args.max_answer_tokens]
    tgt = ans + [lay.eos]
    if args.full_ft:
        ids = ctx + qs + ans
        T = len(ids)
        x = base.embed[torch.tensor(ids, device=base.device)]
        pos = torch.arange(1, T + 1, device=base.device)
        mask = torch.ones(T, T, dtype=torch.bool, device=base.device).tril()
        h, _ = base.forward(x, pos, mask, lora=tr)
        first = len(ctx) + len(qs) - 1
    else:
        caps, apos = sac_encode(base, tr, ctx)
        dec = qs + ans
        h = sac_decode_hidden(base, tr, caps, apos, len(ctx), dec)
        first = len(qs)  # row 0 is [LM]; row len(qs) is the last answer-prefix token
    lg = base.logits(h[first:first + len(tgt)])
    return F.cross_entropy(lg, torch.tensor(tgt, device=base.device)), len(tgt)


def lm_loss(base, tr, lay, ids, args):
    """Stage 1: compress [bos] + first half; decoder [LM] + second[:-1]; loss on second (+eos)."""
    h = len(ids) // 2
    first = [lay.bos] + ids[:h]
    second = ids[h:] + [lay.eos]
    caps, apos = sac_encode(base, tr, first)
    hid = sac_decode_hidden(base, tr, caps, apos, len(first), second[:-1])
    lg = base.logits(hid)
    return F.cross_entropy(lg, torch.tensor(second, device=base.device)), len(second)


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------

def export(path, base, tr, args, facts, fingerprint, source, dtype="BF16"):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    f32 = lambda t: t.detach().cpu().float().numpy()
    tmp = path + ".tmp"
    if args.full_ft:
        md = {"format": LORA_FORMAT, "format_version": "1", "lora_rank": str(tr.rank),
              "lora_scale": str(float(tr.scale)), "hidden_size": str(base.H), "num_layers": str(base.nl),
              "base_model": fingerprint, "base_model_name": str(facts["name"]),
              "bos_id": str(args.bos_id), "eos_id": str(args.eos_id), "context_header": CONTEXT_HEADER,
              "question_prefix": QUESTION_PREFIX, "answer_prefix": ANSWER_PREFIX,
              "positions": "1-based, causal, whole prompt", "source": source}
        t = {}
        for i in range(base.nl):
            t[f"layers.{i}.q_proj.lora_A"] = (dtype, f32(tr.qA[i]))
            t[f"layers.{i}.q_proj.lora_B"] = (dtype, f32(tr.qB[i]))
            t[f"layers.{i}.v_proj.lora_A"] = (dtype, f32(tr.vA[i]))
            t[f"layers.{i}.v_proj.lora_B"] = (dtype, f32(tr.vB[i]))
        write_safetensors(tmp, t, metadata=md)
    else:
        md = adapter_metadata(ratio=tr.ratio, lora_rank=tr.rank, lora_scale=tr.scale, hidden=base.H,
                              layers=base.nl, base_model=fingerprint, base_model_name=str(facts["name"]),
                              bos_id=args.bos_id, eos_id=args.eos_id, source=source)
        from sac_ref import write_adapter
        write_adapter(tmp, f32(tr.role), f32(tr.special), [f32(a) for a in tr.qA], [f32(b) for b in tr.qB],
                      [f32(a) for a in tr.vA], [f32(b) for b in tr.vB], md, dtype=dtype)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=int)
    g.add_argument("--full-ft", action="store_true")
    ap.add_argument("--model", default=os.environ.get("ANCHORKV_SMOLLM2_GGUF",
                                                      os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--qa", default=os.path.join(ROOT, "data", "qa", "train.jsonl"))
    ap.add_argument("--lm", default=os.path.join(ROOT, "data", "lm", "train.jsonl"))
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lora-scale", type=float, default=2.0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stage1-steps", type=int, default=20000, help="max optimizer steps (0 = skip stage 1)")
    ap.add_argument("--stage2-steps", type=int, default=20000)
    ap.add_argument("--stage1-frac", type=float, default=0.2, help="share of --time-budget-min for stage 1")
    ap.add_argument("--time-budget-min", type=float, default=0, help="stop cleanly and export (0 = no limit)")
    ap.add_argument("--lr1", type=float, default=1e-4)
    ap.add_argument("--lr2", type=float, default=5e-5)
    ap.add_argument("--warmup", type=int, default=300, help="warm-up optimizer steps per stage")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=8, help="examples per optimizer step (gradient accumulation)")
    ap.add_argument("--max-context-tokens", type=int, default=1020)
    ap.add_argument("--max-answer-tokens", type=int, default=32)
    ap.add_argument("--stage1-max-tokens", type=int, default=1020, help="stage-1 document length cap (split in half)")
    ap.add_argument("--bos-id", type=int, default=1)
    ap.add_argument("--eos-id", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-examples", type=int, default=0, help="use only the first N examples (overfit checks)")
    ap.add_argument("--ckpt-every", type=int, default=5, help="optimizer steps between checkpoints + exports")
    ap.add_argument("--out", required=True, help="run directory (checkpoint, loss log, config)")
    ap.add_argument("--export", help="final adapter path (.safetensors); config and loss log are copied next to it")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--log-every", type=int, default=1)
    args = ap.parse_args()

    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    facts = model_facts(args.model)
    fingerprint = model_fingerprint(args.model, facts)
    base = Base(args.model, args.device)
    lay = Layout(gguf_tokenizer(args.model), args.bos_id, args.eos_id)
    tr = Trainable(base, args.rank, args.lora_scale, None if args.full_ft else args.ratio, args.seed)
    name = "fullft" if args.full_ft else f"r{args.ratio}"

    rng = random.Random(args.seed)
    qa = read_jsonl(args.qa)
    rng.shuffle(qa)
    if args.limit_examples:
        qa = qa[: args.limit_examples]
    lm_docs = []
    do_stage1 = not args.full_ft and args.stage1_steps > 0
    if do_stage1:
        for d in read_jsonl(args.lm):
            lm_docs.append(d["text"])
        rng.shuffle(lm_docs)
        if args.limit_examples:
            lm_docs = lm_docs[: args.limit_examples]

    budget = args.time_budget_min * 60 if args.time_budget_min > 0 else float("inf")
    cfg = dict(vars(args), name=name, base_model=fingerprint, base_model_name=str(facts["name"]),
               header_ids=lay.header, question_prefix_ids=lay.qp, answer_prefix_ids=lay.ap,
               trainable_params=int(sum(p.numel() for p in tr.params())), torch=torch.__version__,
               schedule="linear warm-up then constant (per stage)", optimizer="AdamW betas (0.9, 0.95)")
    cfg_path = os.path.join(args.out, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    loss_path = os.path.join(args.out, "loss.csv")
    ckpt_path = os.path.join(args.out, "ckpt.pt")

    state = {"stage": 1 if do_stage1 else 2, "step": 0, "cursor": 0, "elapsed": 0.0, "stage_elapsed": 0.0,
             "examples": 0}
    opt = None

    def make_opt(lr):
        return torch.optim.AdamW(tr.params(), lr=lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)

    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        tr.load(ck["params"])
        state = ck["state"]
        opt = make_opt(args.lr1 if state["stage"] == 1 else args.lr2)
        opt.load_state_dict(ck["opt"])
        print(f"resumed {ckpt_path}: stage {state['stage']} step {state['step']}", flush=True)
    else:
        with open(loss_path, "w") as f:
            f.write("stage,step,examples,loss,target_tokens,lr,grad_norm,sec_per_step,elapsed_s\n")
        opt = make_opt(args.lr1 if state["stage"] == 1 else args.lr2)
    elapsed0 = state["elapsed"]
    t0 = time.time()

    def elapsed():
        return elapsed0 + time.time() - t0

    def save_all(final=False):
        torch.save({"params": tr.state(), "opt": opt.state_dict(), "state": dict(state, elapsed=elapsed())},
                   ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        src = (f"tools/sac/train.py {name} rank {args.rank}; stage {state['stage']} step {state['step']}; "
               f"{'final' if final else 'checkpoint'}; data tools/data/prepare_qa.py (quoref+drop train split, shakespeare)")
        local = os.path.join(args.out, "adapter.safetensors")
        export(local, base, tr, args, facts, fingerprint, src)
        if args.export:
            stem = args.export[: -len(".safetensors")] if args.export.endswith(".safetensors") else args.export
            shutil.copyfile(local, args.export + ".tmp")
            os.replace(args.export + ".tmp", args.export)
            with open(cfg_path) as f:
                c = json.load(f)
            c["progress"] = dict(state, elapsed=elapsed(), final=final)
            with open(stem + ".json", "w") as f:
                json.dump(c, f, indent=1)
            shutil.copyfile(loss_path, stem + ".loss.csv")

    lm_cursor_rng = random.Random(args.seed + 1)

    def next_example():
        i = state["cursor"]
        state["cursor"] += 1
        if state["stage"] == 1:
            text = lm_docs[i % len(lm_docs)]
            ids = lay.enc(text)
            cap = args.stage1_max_tokens
            if len(ids) > cap:
                off = lm_cursor_rng.randrange(0, len(ids) - cap)
                ids = ids[off: off + cap]
            if len(ids) < 32:
                return None
            return ("lm", ids)
        return ("qa", qa[i % len(qa)])

    print(f"[{name}] {cfg['trainable_params']} trainable params; stage {state['stage']}; budget {budget:.0f}s; "
          f"qa {len(qa)} lm {len(lm_docs)}; setup {time.time() - t_start:.1f}s", flush=True)
    last_log = time.time()
    while True:
        st = state["stage"]
        stage_budget = budget * args.stage1_frac if st == 1 else budget
        max_steps = args.stage1_steps if st == 1 else args.stage2_steps
        if state["step"] >= max_steps or elapsed() >= stage_budget:
            if st == 1:
                print(f"[{name}] stage 1 done at step {state['step']} ({elapsed():.0f}s)", flush=True)
                save_all()
                state.update(stage=2, step=0, cursor=0)
                opt = make_opt(args.lr2)
                continue
            break
        lr_base = args.lr1 if st == 1 else args.lr2
        lr = lr_base * min(1.0, (state["step"] + 1) / max(1, args.warmup))
        for gr in opt.param_groups:
            gr["lr"] = lr
        ts = time.time()
        opt.zero_grad(set_to_none=True)
        tot, ntok, n = 0.0, 0, 0
        while n < args.batch:
            if n > 0 and elapsed() > stage_budget + 60:
                break  # out of time: step with the partial batch, then export
            ex = next_example()
            if ex is None:
                continue
            kind, item = ex
            loss, k = lm_loss(base, tr, lay, item, args) if kind == "lm" else qa_loss(base, tr, lay, item, args)
            loss.backward()
            tot += loss.item()
            ntok += k
            n += 1
        for p in tr.params():
            if p.grad is not None:
                p.grad /= n
        gn = torch.nn.utils.clip_grad_norm_(tr.params(), args.clip).item()
        opt.step()
        state["step"] += 1
        state["examples"] += n
        dt = time.time() - ts
        with open(loss_path, "a") as f:
            f.write(f"{st},{state['step']},{state['examples']},{tot / n:.5f},{ntok},{lr:.3g},{gn:.4f},{dt:.2f},{elapsed():.1f}\n")
        if state["step"] % args.log_every == 0:
            left = min(stage_budget - elapsed(), (max_steps - state["step"]) * dt)
            print(f"[{name}] stage {st} step {state['step']} loss {tot / n:.4f} lr {lr:.2g} gnorm {gn:.3f} "
                  f"{dt:.1f}s/step ({1 / dt:.3f} steps/s) elapsed {elapsed() / 60:.1f}m "
                  f"stage ETA {left / 60:.1f}m", flush=True)
        if state["step"] % args.ckpt_every == 0:
            save_all()
    save_all(final=True)
    print(f"[{name}] done: stage 2 step {state['step']}, {elapsed() / 60:.1f} min; exported "
          f"{args.export or os.path.join(args.out, 'adapter.safetensors')}", flush=True)


if __name__ == "__main__":
    main()
