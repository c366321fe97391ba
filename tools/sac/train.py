#!/usr/bin/env python3
"""Train SAC adapters (or the Full-FT LoRA upper bound and distillation teacher) with PyTorch.

The recipe of ../shared/spec/SAC.md on SmolLM2-135M-Instruct (GGUF dequantized, attn_q/attn_k
rows un-permuted to HF order, so LoRA tensors are in the HF orientation the engine expects):

  encoder  the whole context, cut into 510-token windows that are encoded independently as
           the rows of one batch (as the engine does); global 1-based positions, bidirectional
           attention inside a window, LoRA on q/v (y = xW^T + scale*(xA)B), role_tokens[k]
           added to the k-th anchor of each window; keeps the anchors' K/V per layer
  decoder  frozen base model, causal; past = anchor K (rotated at the anchor's position) + V;
           input [LM] (special_tokens row 1) at position N, then question segment + answer.
           Every question of a passage is a row of one decoder batch: one encoder pass per passage.
  stage 1  LM continuation on training passages and Shakespeare: the first half (with bos) is
           compressed, the rest (+ eos) predicted
  stage 2  QA: cross-entropy on the answer tokens + eos, plus (with --teacher) the KL to the
           full-context teacher's next-token distribution on the answer rows and, at a lower
           weight, on the question rows (teacher top-k cached under data/teacher/)
  --full-ft  no compression: base + LoRA q/v reading bos + header + context + question + answer
           causally; the fair upper bound, and the teacher for distillation.

Frozen base in bf16 under autocast (--no-amp: fp32), trainable tensors in fp32. LoRA A drawn
as the authors' kaiming_uniform_ on an [in, rank] tensor does (bound 1/sqrt(rank)), B zero;
role tokens and [LM] in their own parameter group (--embed-lr-mult x the LoRA rate, no weight
decay). Cosine schedule with warm-up per stage. A dev set held out by passage from the
training side is scored every --dev-every steps (own-passage answer loss, the same questions
with another passage's context, greedy F1) into dev.csv. Checkpoints (trainables, optimizer,
schedule, RNG, data position) every --ckpt-every steps and on SIGTERM/SIGINT; --resume continues
exactly. Train only on Quoref, DROP and Shakespeare; nothing from the test split is read.

Examples:
  python tools/sac/train.py --full-ft --out tools/sac/runs/fullft --resume \\
      --export config/adapters/smollm2-135m-fullft-lora.safetensors
  python tools/sac/train.py --ratio 5 --out tools/sac/runs/r5 --resume \\
      --teacher config/adapters/smollm2-135m-fullft-lora.safetensors \\
      --export config/adapters/smollm2-135m-sac-r5.safetensors
  python tools/sac/train.py --ratio 15 --init-from tools/sac/runs/r5/ckpt.pt ...   # warm start
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import string
import sys
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

from llama_ref import gguf_tokenizer, load_gguf, read_safetensors, write_safetensors  # noqa: E402
from sac_ref import (ANSWER_PREFIX, CONTEXT_HEADER, QUESTION_PREFIX, WINDOW,  # noqa: E402
                     adapter_metadata, anchor_indices, model_facts, model_fingerprint, window_lengths)

LORA_FORMAT = "anchorkv.lora-adapter"


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

class Base:
    """Frozen Llama weights (torch tensors, W stored [in, out], HF row order)."""

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
        # The residual stream and norms stay in fp32 when the weights are bf16.
        self.act = torch.float64 if dtype == torch.float64 else torch.float32
        del m

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def cos_sin(self, pos):
        """pos [B, T] long -> cos, sin [B, 1, T, d] (broadcast over heads)."""
        ang = pos.to(torch.float64)[..., None] * self.inv_freq
        emb = torch.cat([ang, ang], -1)[:, None]
        return emb.cos().to(self.act), emb.sin().to(self.act)

    @staticmethod
    def rope(x, cos, sin):  # x [B, heads, T, d]
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(self, x, pos, mask, lora=None, prefix=None, capture=None, stop_after_kv=False, return_kv=False):
        """x [B, T, H] input embeddings; pos [B, T]; mask bool broadcastable to [B, 1, T, P+T]
        (True = may attend) or None (every row sees every key).
        lora: object with qA/qB/vA/vB/scale or None.  prefix: per layer (K rotated, V), each
        [1 or B, nkv, P, d].  capture: (batch idx, row idx) whose per-layer K (before RoPE) and V
        [n, kv_dim] are returned; stop_after_kv ends after the last layer's K/V.
        return_kv: also return this input's per-layer (K rotated, V) [B, nkv, T, d].
        Returns (final-normed hidden [B, T, H] or None, captures, kvs)."""
        B, T, _ = x.shape
        x = x.to(self.act)
        cos, sin = self.cos_sin(pos)
        caps, kvs = [], []
        for l, L in enumerate(self.layers):
            h = self.rms(x, L["attn_norm"])
            q = h @ L["wq"]
            k = h @ L["wk"]
            v = h @ L["wv"]
            if lora is not None:
                q = q + lora.scale * ((h @ lora.qA[l]) @ lora.qB[l])
                v = v + lora.scale * ((h @ lora.vA[l]) @ lora.vB[l])
            if capture is not None:
                caps.append((k[capture], v[capture]))
            if stop_after_kv and l == self.nl - 1:
                return None, caps, kvs
            q = self.rope(q.view(B, T, self.nh, self.d).transpose(1, 2).to(self.act), cos, sin)
            k = self.rope(k.view(B, T, self.nkv, self.d).transpose(1, 2).to(self.act), cos, sin)
            v = v.view(B, T, self.nkv, self.d).transpose(1, 2).to(self.act)
            if return_kv:
                kvs.append((k, v))
            if prefix is not None:
                pk, pv = prefix[l]
                if pk.shape[0] != B:
                    pk, pv = pk.expand(B, -1, -1, -1), pv.expand(B, -1, -1, -1)
                k = torch.cat([pk.to(k.dtype), k], 2)
                v = torch.cat([pv.to(v.dtype), v], 2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            x = x + o.transpose(1, 2).reshape(B, T, self.nh * self.d) @ L["wo"]
            h = self.rms(x, L["ffn_norm"])
            x = x + (F.silu(h @ L["wg"]) * (h @ L["wu"])) @ L["wd"]
        return self.rms(x, self.final_norm), caps, kvs

    def logits(self, h):
        return (h @ self.lm_head.T).to(self.act)


class Trainable:
    """LoRA q/v (+ role tokens and special tokens for SAC).  Fp32 (or fp64) leaf tensors."""

    def __init__(self, base: Base, rank: int, scale: float, ratio: int | None, seed: int,
                 a_bound: float | None = None, role_std: float = 0.02):
        g = torch.Generator().manual_seed(seed)
        H, dev = base.H, base.device
        qd, kvd = base.nh * base.d, base.nkv * base.d
        # kaiming_uniform_(a=sqrt 5) on the authors' [in, rank] tensor: fan_in = rank.
        bound = 1.0 / math.sqrt(rank) if a_bound is None else a_bound
        dt = base.act
        u = lambda *s: ((torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_()
        z = lambda *s: torch.zeros(*s, device=dev, dtype=dt, requires_grad=True)
        self.rank, self.scale, self.ratio = rank, scale, ratio
        self.qA = [u(H, rank) for _ in range(base.nl)]
        self.qB = [z(rank, qd) for _ in range(base.nl)]
        self.vA = [u(H, rank) for _ in range(base.nl)]
        self.vB = [z(rank, kvd) for _ in range(base.nl)]
        self.role = self.special = None
        if ratio is not None:
            self.role = (torch.randn(WINDOW // ratio, H, generator=g, dtype=torch.float64) * role_std).to(dev, dt).requires_grad_()
            e = base.embed.to(torch.float64)
            self.special = (torch.randn(2, H, generator=g, dtype=torch.float64) * e.std().item()
                            + e.mean().item()).to(dev, dt).requires_grad_()

    def lora_params(self):
        return self.qA + self.qB + self.vA + self.vB

    def embed_params(self):
        return [self.role, self.special] if self.role is not None else []

    def params(self):
        return self.lora_params() + self.embed_params()

    def state(self):
        return [p.detach().cpu().clone() for p in self.params()]

    def load(self, tensors):
        with torch.no_grad():
            for p, t in zip(self.params(), tensors):
                p.copy_(t)


class FrozenLoRA:
    """A Full-FT LoRA file (anchorkv.lora-adapter) as frozen tensors: the distillation teacher."""

    def __init__(self, path: str, base: Base):
        st = read_safetensors(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            md = json.loads(f.read(n)).get("__metadata__", {})
        if md.get("format") != LORA_FORMAT:
            raise SystemExit(f"{path}: not a Full-FT LoRA file (format {md.get('format')!r})")
        self.scale = float(md["lora_scale"])
        t = lambda name: torch.from_numpy(st[name].astype(np.float32)).to(base.device, base.dtype)
        self.qA = [t(f"layers.{i}.q_proj.lora_A") for i in range(base.nl)]
        self.qB = [t(f"layers.{i}.q_proj.lora_B") for i in range(base.nl)]
        self.vA = [t(f"layers.{i}.v_proj.lora_A") for i in range(base.nl)]
        self.vB = [t(f"layers.{i}.v_proj.lora_B") for i in range(base.nl)]
        self.sha = hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------
# Contexts: what a decoder batch reads as its past
# ----------------------------------------------------------------------------

class Context:
    """Past KV per layer ([1, nkv, P, d], K rotated), the position of the lead row, and the
    lead row's input embedding [1, H].  The decoder input is lead + seq, at positions
    pos0, pos0+1, ...; row k predicts seq[k] (and row len(seq) predicts eos).
    SAC: past = anchors, lead = [LM] at N.  Full context: past = ctx[:-1], lead = ctx[-1]."""

    def __init__(self, prefix, pos0: int, lead, lora=None):
        self.prefix, self.pos0, self.lead, self.lora = prefix, pos0, lead, lora


def sac_encode(base: Base, tr: Trainable, ids):
    """Anchor K (before RoPE) / V per layer [n_anchors, kv_dim] and their 1-based positions.
    The windows of the context are the rows of one batch (the last one padded, its padding
    masked out as keys)."""
    dev = base.device
    lens = window_lengths(len(ids))
    nw, Lm = len(lens), max(lens)
    tok = torch.zeros(nw, Lm, dtype=torch.long)
    bidx, tidx, kidx = [], [], []
    for c, L in enumerate(lens):
        tok[c, :L] = torch.tensor(ids[c * WINDOW: c * WINDOW + L])
        loc = anchor_indices(L, tr.ratio)
        bidx += [c] * len(loc)
        tidx += loc
        kidx += list(range(len(loc)))
    tok = tok.to(dev)
    bidx, tidx = torch.tensor(bidx, device=dev), torch.tensor(tidx, device=dev)
    x = base.embed[tok].to(base.act)
    x = x.index_put((bidx, tidx), tr.role[torch.tensor(kidx, device=dev)].to(base.act), accumulate=True)
    pos = (torch.arange(nw, device=dev)[:, None] * WINDOW + 1 + torch.arange(Lm, device=dev)[None, :])
    mask = None
    if lens[-1] != Lm:
        keep = torch.arange(Lm, device=dev)[None, :] < torch.tensor(lens, device=dev)[:, None]
        mask = keep[:, None, None, :]
    _, caps, _ = base.forward(x, pos, mask, lora=tr, capture=(bidx, tidx), stop_after_kv=True)
    return caps, pos[bidx, tidx]


def sac_context(base: Base, tr: Trainable, ids) -> Context:
    caps, apos = sac_encode(base, tr, ids)
    cos, sin = base.cos_sin(apos[None])
    P = apos.shape[0]
    prefix = []
    for K, V in caps:
        k = base.rope(K.view(1, P, base.nkv, base.d).transpose(1, 2).to(base.act), cos, sin)
        prefix.append((k, V.view(1, P, base.nkv, base.d).transpose(1, 2)))
    return Context(prefix, len(ids), tr.special[1:2])


def full_context(base: Base, lora, ids) -> Context:
    """Causal prefill of ids[:-1] (with the Full-FT LoRA); the last token leads the decoder."""
    dev = base.device
    T = len(ids) - 1
    x = base.embed[torch.tensor(ids[:-1], device=dev)][None]
    pos = torch.arange(1, T + 1, device=dev)[None]
    mask = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    _, _, kvs = base.forward(x, pos, mask, lora=lora, return_kv=True)
    return Context(kvs, len(ids), base.embed[torch.tensor(ids[-1:], device=dev)], lora=lora)


def decode_rows(base: Base, ctx: Context, seqs):
    """Hidden states [Q, 1 + max len, H] of the lead row + each seq (right-padded rows)."""
    dev = base.device
    Q, T = len(seqs), 1 + max(len(s) for s in seqs)
    tok = torch.zeros(Q, T - 1, dtype=torch.long)
    for i, s in enumerate(seqs):
        tok[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    x = torch.cat([ctx.lead.to(base.act)[None].expand(Q, -1, -1), base.embed[tok.to(dev)].to(base.act)], 1)
    pos = torch.arange(ctx.pos0, ctx.pos0 + T, device=dev)[None]
    P = ctx.prefix[0][0].shape[2]
    mask = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], 1).to(dev)
    h, _, _ = base.forward(x, pos, mask, lora=ctx.lora, prefix=ctx.prefix)
    return h


def sac_decode_hidden(base: Base, tr: Trainable, caps, anchor_pos, N: int, dec_ids):
    """Decoder hidden states [T, H] for [LM] + dec_ids at positions N, N+1, ... (frozen base)."""
    cos, sin = base.cos_sin(anchor_pos[None])
    P = anchor_pos.shape[0]
    prefix = [(base.rope(K.view(1, P, base.nkv, base.d).transpose(1, 2), cos, sin),
               V.view(1, P, base.nkv, base.d).transpose(1, 2)) for K, V in caps]
    return decode_rows(base, Context(prefix, N, tr.special[1:2]), [dec_ids])[0]


@torch.no_grad()
def greedy(base: Base, ctx: Context, seq, eos: int, max_new: int):
    """Greedy continuation of lead + seq from a context, one token at a time with a KV cache."""
    dev = base.device
    x = torch.cat([ctx.lead.to(base.act), base.embed[torch.tensor(seq, device=dev, dtype=torch.long)].to(base.act)], 0)[None]
    prefix, pos, out = ctx.prefix, ctx.pos0, []
    while True:
        T = x.shape[1]
        P = prefix[0][0].shape[2]
        mask = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], 1).to(dev)
        h, _, kvs = base.forward(x, torch.arange(pos, pos + T, device=dev)[None], mask, lora=ctx.lora,
                                 prefix=prefix, return_kv=True)
        nxt = int(base.logits(h[0, -1]).argmax())
        if nxt == eos or len(out) >= max_new:
            return out
        out.append(nxt)
        prefix = [(torch.cat([pk.to(k.dtype), k], 2), torch.cat([pv.to(v.dtype), v], 2)) for (pk, pv), (k, v) in zip(prefix, kvs)]
        pos += T
        x = base.embed[torch.tensor([nxt], device=dev)].to(base.act)[None]


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


def passages_of(rows):
    """Group QA rows by (task, context), in first-seen order."""
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["context"]), []).append(r)
    return [{"task": t, "context": c, "qs": v} for (t, c), v in groups.items()]


def split_dev(passages, per_task: int):
    """Hold out whole training passages (sha256 order, salted apart from the test split's
    order) until each task has >= per_task questions."""
    key = lambda p: hashlib.sha256(("dev:" + p["context"]).encode()).hexdigest()
    dev, n = set(), Counter()
    for i in sorted(range(len(passages)), key=lambda i: key(passages[i])):
        t = passages[i]["task"]
        if n[t] < per_task:
            dev.add(i)
            n[t] += len(passages[i]["qs"])
    return [p for i, p in enumerate(passages) if i not in dev], [p for i, p in enumerate(passages) if i in dev]


_PUNCT = set(string.punctuation)


def _norm(s):
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def squad_f1(pred: str, golds) -> float:
    best = 0.0
    for g in golds:
        p, t = _norm(pred).split(), _norm(g).split()
        common = sum((Counter(p) & Counter(t)).values())
        if not p or not t:
            f = float(p == t)
        elif common == 0:
            f = 0.0
        else:
            pr, rc = common / len(p), common / len(t)
            f = 2 * pr * rc / (pr + rc)
        best = max(best, f)
    return best


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

def answer_rows(qs_lens, ans_lens):
    """(question row, decoder row) of every answer target (answer tokens, then eos)."""
    qi, ri = [], []
    for i, (a, b) in enumerate(zip(qs_lens, ans_lens)):
        qi += [i] * (b + 1)
        ri += list(range(a, a + b + 1))
    return qi, ri


def topk_kl(student_logits, t_ids, t_logp, t_tail):
    """KL(teacher || student) over the teacher's top-k tokens plus one bucket for the rest."""
    s = F.log_softmax(student_logits.float(), -1)
    s_top = s.gather(-1, t_ids)
    s_tail = torch.log1p(-s_top.exp().sum(-1).clamp(max=1 - 1e-6))
    p = t_logp.exp()
    return (p * (t_logp - s_top)).sum(-1) + t_tail.exp() * (t_tail - s_tail)


class TeacherCache:
    """Top-k next-token log-probs of the full-context teacher for every row of a passage's
    decoder batch, computed once per (teacher file, passage) and kept under data/teacher/."""

    def __init__(self, base, lora: FrozenLoRA, lay, k: int, folder: str):
        self.base, self.lora, self.lay, self.k = base, lora, lay, k
        self.dir = os.path.join(folder, f"{lora.sha[:16]}-k{k}")
        os.makedirs(self.dir, exist_ok=True)
        self.hits = self.misses = 0

    @torch.no_grad()
    def get(self, ctx_ids, seqs):
        key = hashlib.sha256(json.dumps([ctx_ids, seqs]).encode()).hexdigest()[:32]
        path = os.path.join(self.dir, key + ".pt")
        if os.path.exists(path):
            self.hits += 1
            return torch.load(path)
        self.misses += 1
        h = decode_rows(self.base, full_context(self.base, self.lora, ctx_ids), seqs)
        out = []
        for i, s in enumerate(seqs):
            lp = F.log_softmax(self.base.logits(h[i, :len(s) + 1]).float(), -1)
            v, ix = lp.topk(self.k, -1)
            tail = torch.log1p(-v.exp().sum(-1).clamp(max=1 - 1e-6))
            out.append((ix.to(torch.int32), v.to(torch.float16), tail.float()))
        torch.save(out, path + ".tmp")
        os.replace(path + ".tmp", path)
        return out


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
# Training
# ----------------------------------------------------------------------------

class Trainer:
    def __init__(self, args):
        self.a = a = args
        self.name = "fullft" if a.full_ft else f"r{a.ratio}"
        self.dev = a.device
        self.facts = model_facts(a.model)
        self.fingerprint = model_fingerprint(a.model, self.facts)
        self.base = Base(a.model, a.device, torch.bfloat16 if a.amp else torch.float32)
        self.lay = Layout(gguf_tokenizer(a.model), a.bos_id, a.eos_id)
        self.tr = Trainable(self.base, a.rank, a.lora_scale, None if a.full_ft else a.ratio, a.seed,
                            role_std=a.role_init_std)
        self.teacher = None
        if a.teacher and not a.full_ft:
            self.teacher = TeacherCache(self.base, FrozenLoRA(a.teacher, self.base), self.lay, a.teacher_topk,
                                        a.teacher_cache)
        self.load_data()
        self.stop_requested = False

    # -- data -------------------------------------------------------------
    def load_data(self):
        a, lay = self.a, self.lay
        train, dev = split_dev(passages_of(read_jsonl(a.qa)), a.dev_questions_per_task)
        if a.limit_passages:
            train = train[: a.limit_passages]
        self.dev_passages = dev[: a.dev_limit_passages] if a.dev_limit_passages else dev
        for p in train + self.dev_passages:
            p["ids"] = lay.context_ids(p["context"], a.max_context_tokens)
            p["seqs"] = [(lay.question_seg(q["question"]), lay.enc(q["answers"][0])[: a.max_answer_tokens])
                         for q in p["qs"]]
        self.train_passages = train
        dev_ctx = {p["context"] for p in dev}
        self.lm_docs = []
        if not a.full_ft and a.stage1_steps > 0:
            for d in read_jsonl(a.lm):
                if d["text"] not in dev_ctx:  # dev passages stay unseen in stage 1 too
                    self.lm_docs.append(d["text"])
            if a.limit_passages:
                self.lm_docs = self.lm_docs[: a.limit_passages]

    def order(self, stage, epoch, n):
        idx = list(range(n))
        random.Random(f"{self.a.seed}:{stage}:{epoch}").shuffle(idx)
        return idx

    def next_items(self, st, k):
        """The next k item indices of the stage's epoch order; advances the data position."""
        n = len(self.lm_docs) if st["stage"] == 1 else len(self.train_passages)
        out = []
        while len(out) < k:
            if st["cursor"] >= n:
                st["epoch"] += 1
                st["cursor"] = 0
            out.append(self.order(st["stage"], st["epoch"], n)[st["cursor"]])
            st["cursor"] += 1
        return out

    # -- losses -----------------------------------------------------------
    def context(self, lora, ids):
        return full_context(self.base, lora, ids) if self.a.full_ft else sac_context(self.base, lora, ids)

    def passage_loss(self, p):
        """(loss summed over the passage's questions, ce sum, kl sum, target tokens)."""
        a, base, lay = self.a, self.base, self.lay
        seqs = [qs + ans for qs, ans in p["seqs"]]
        h = decode_rows(base, self.context(self.tr, p["ids"]), seqs)
        qi, ri = answer_rows([len(qs) for qs, _ in p["seqs"]], [len(ans) for _, ans in p["seqs"]])
        tgt = torch.tensor([t for qs, ans in p["seqs"] for t in ans + [lay.eos]], device=self.dev)
        lg = base.logits(h[torch.tensor(qi), torch.tensor(ri)])
        ce_tok = F.cross_entropy(lg.float(), tgt, reduction="none")
        qidx = torch.tensor(qi, device=self.dev)
        nq = len(seqs)
        per_q = lambda v: torch.zeros(nq, device=self.dev, dtype=v.dtype).index_add(0, qidx, v) / \
            torch.bincount(qidx, minlength=nq).to(v.dtype)
        ce = per_q(ce_tok).sum()
        loss, kl = ce, torch.zeros((), device=self.dev)
        if self.teacher is not None and a.kl_weight > 0:
            cached = self.teacher.get(p["ids"], seqs)
            for i, (s, (qs, ans)) in enumerate(zip(seqs, p["seqs"])):
                ids_t, lp_t, tail_t = (c.to(self.dev) for c in cached[i])
                kl_rows = topk_kl(base.logits(h[i, :len(s) + 1]), ids_t.long(), lp_t.float(), tail_t)
                nqr = len(qs)
                kl_q = kl_rows[nqr:].mean() + a.kl_question_weight * kl_rows[:nqr].mean()
                kl = kl + kl_q
            loss = loss + a.kl_weight * kl
        return loss, ce.item(), kl.item(), len(qi)

    def lm_loss(self, text):
        a, lay = self.a, self.lay
        ids = lay.enc(text)
        cap = a.stage1_max_tokens
        if len(ids) > cap:
            off = random.Random(f"{a.seed}:{text[:64]}").randrange(0, len(ids) - cap)
            ids = ids[off: off + cap]
        if len(ids) < 64:
            return None
        half = len(ids) // 2
        first, second = [lay.bos] + ids[:half], ids[half:]
        h = decode_rows(self.base, sac_context(self.base, self.tr, first), [second])[0]
        tgt = torch.tensor(second + [lay.eos], device=self.dev)
        return F.cross_entropy(self.base.logits(h).float(), tgt), len(tgt)

    # -- dev --------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self):
        """Own-passage and wrong-passage answer loss (nats per answer token, eos excluded), and
        greedy SQuAD F1 on the first --dev-f1-questions dev questions."""
        a, base, lay = self.a, self.base, self.lay
        t0 = time.time()
        ps = self.dev_passages
        own_sum = wrong_sum = 0.0
        ntok = 0
        f1s = []

        def ans_loss(ctx, p):
            seqs = [qs + ans for qs, ans in p["seqs"]]
            h = decode_rows(base, ctx, seqs)
            qi, ri, tg = [], [], []
            for i, (qs, ans) in enumerate(p["seqs"]):
                qi += [i] * len(ans)
                ri += list(range(len(qs), len(qs) + len(ans)))
                tg += ans
            lg = base.logits(h[torch.tensor(qi), torch.tensor(ri)])
            return F.cross_entropy(lg.float(), torch.tensor(tg, device=self.dev), reduction="sum").item(), len(tg)

        with torch.autocast(self.dev, dtype=torch.bfloat16, enabled=a.amp):
            first_ctx, prev = None, None
            for j, p in enumerate(ps):
                ctx = self.context(self.tr, p["ids"])
                s, n = ans_loss(ctx, p)
                own_sum += s
                ntok += n
                if prev is not None:
                    wrong_sum += ans_loss(ctx, prev)[0]   # the previous passage's questions, this context
                else:
                    first_ctx = ctx
                prev = p
                for q, (qs, ans) in zip(p["qs"], p["seqs"]):
                    if len(f1s) < a.dev_f1_questions:
                        out = greedy(base, ctx, qs, lay.eos, a.dev_max_new_tokens)
                        f1s.append(squad_f1(lay.tok.decode(out), q["answers"]))
            wrong_sum += ans_loss(first_ctx, prev)[0]
        return {"dev_loss": own_sum / ntok, "dev_loss_wrong": wrong_sum / ntok,
                "dev_gap": (wrong_sum - own_sum) / ntok, "dev_f1": 100 * float(np.mean(f1s)) if f1s else float("nan"),
                "dev_questions": sum(len(p["qs"]) for p in ps), "dev_f1_questions": len(f1s),
                "dev_seconds": time.time() - t0}

    # -- schedule / state --------------------------------------------------
    def stage_steps(self, stage):
        a = self.a
        if stage == 1:
            return a.stage1_steps
        return a.stage2_steps or math.ceil(a.stage2_epochs * len(self.train_passages) / a.passages_per_step)

    def lr_factor(self, stage, step):
        total = self.stage_steps(stage)
        warm = min(self.a.warmup, max(1, total // 10))
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, total - warm)
        return self.a.min_lr_frac + (1 - self.a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    def make_opt(self, stage):
        a = self.a
        lr = a.lr1 if stage == 1 else a.lr2
        groups = [{"params": self.tr.lora_params(), "lr": lr, "weight_decay": a.weight_decay, "base_lr": lr}]
        if self.tr.embed_params():
            groups.append({"params": self.tr.embed_params(), "lr": lr * a.embed_lr_mult, "weight_decay": 0.0,
                           "base_lr": lr * a.embed_lr_mult})
        return torch.optim.AdamW(groups, betas=(0.9, 0.95))

    def warm_start(self, path):
        """LoRA and [LM] from another run's checkpoint; role rows mapped by anchor position
        (anchor k at ratio r sits where anchor (o + k*r - o') / r' sits at the source ratio r')."""
        ck = torch.load(path, weights_only=False)
        src = ck["config"]
        names = ck["param_names"]
        tensors = dict(zip(names, ck["params"]))
        with torch.no_grad():
            for i in range(self.base.nl):
                self.tr.qA[i].copy_(tensors[f"qA.{i}"]); self.tr.qB[i].copy_(tensors[f"qB.{i}"])
                self.tr.vA[i].copy_(tensors[f"vA.{i}"]); self.tr.vB[i].copy_(tensors[f"vB.{i}"])
            if self.tr.role is not None and "role" in tensors:
                r0, r1 = src["ratio"], self.a.ratio
                o0, o1 = (r0 - 1) // 2, (r1 - 1) // 2
                role0 = tensors["role"]
                for k in range(self.tr.role.shape[0]):
                    j = (o1 + k * r1 - o0) // r0
                    if 0 <= j < role0.shape[0]:
                        self.tr.role[k].copy_(role0[j])
                self.tr.special.copy_(tensors["special"])
        print(f"[{self.name}] warm start from {path} (ratio {src.get('ratio')})", flush=True)

    def param_names(self):
        nl = self.base.nl
        n = [f"qA.{i}" for i in range(nl)] + [f"qB.{i}" for i in range(nl)] + \
            [f"vA.{i}" for i in range(nl)] + [f"vB.{i}" for i in range(nl)]
        return n + (["role", "special"] if self.tr.role is not None else [])

    # -- main loop ---------------------------------------------------------
    def run(self):
        a, tr = self.a, self.tr
        os.makedirs(a.out, exist_ok=True)
        cfg = {k: v for k, v in vars(a).items()}
        cfg.update(name=self.name, base_model=self.fingerprint, base_model_name=str(self.facts["name"]),
                   trainable_params=int(sum(p.numel() for p in tr.params())), torch=torch.__version__,
                   train_passages=len(self.train_passages), train_questions=sum(len(p["qs"]) for p in self.train_passages),
                   dev_passages=len(self.dev_passages), dev_questions=sum(len(p["qs"]) for p in self.dev_passages),
                   lm_docs=len(self.lm_docs), schedule="linear warm-up then cosine (per stage)",
                   optimizer="AdamW betas (0.9, 0.95); LoRA group wd --weight-decay, role/[LM] group wd 0")
        self.cfg = cfg
        ckpt = os.path.join(a.out, "ckpt.pt")
        loss_csv, dev_csv = os.path.join(a.out, "loss.csv"), os.path.join(a.out, "dev.csv")
        do_stage1 = not a.full_ft and a.stage1_steps > 0 and self.lm_docs
        st = {"stage": 1 if do_stage1 else 2, "step": 0, "epoch": 0, "cursor": 0, "examples": 0,
              "passages": 0, "clipped": 0, "elapsed": 0.0, "done": False}
        opt = None
        if a.resume and os.path.exists(ckpt):
            ck = torch.load(ckpt, weights_only=False)
            for k in ("ratio", "full_ft", "rank", "lora_scale", "base_model"):
                if ck["config"].get(k) != cfg.get(k):
                    raise SystemExit(f"{ckpt}: {k} is {ck['config'].get(k)!r} there, {cfg.get(k)!r} here; "
                                     f"use another --out or the same settings")
            tr.load(ck["params"])
            st = ck["state"]
            opt = self.make_opt(st["stage"])
            opt.load_state_dict(ck["opt"])
            random.setstate(ck["rng"]["python"])
            torch.set_rng_state(ck["rng"]["torch"])
            print(f"[{self.name}] resumed {ckpt}: stage {st['stage']} step {st['step']} epoch {st['epoch']} "
                  f"examples {st['examples']}", flush=True)
            if st.get("done"):
                print(f"[{self.name}] this run had finished; nothing to do", flush=True)
                return
        else:
            if a.init_from:
                self.warm_start(a.init_from)
            with open(loss_csv, "w") as f:
                f.write("stage,step,epoch,examples,passages,loss,ce,kl,target_tokens,lr,grad_norm,clipped,"
                        "sec_per_step,elapsed_s\n")
            with open(dev_csv, "w") as f:
                f.write("stage,step,examples,dev_loss,dev_loss_wrong,dev_gap,dev_f1,dev_questions,"
                        "dev_f1_questions,dev_seconds,elapsed_s\n")
            opt = self.make_opt(st["stage"])
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)

        t0, el0 = time.time(), st["elapsed"]
        elapsed = lambda: el0 + time.time() - t0
        budget_end = time.time() + a.time_budget_min * 60 if a.time_budget_min > 0 else float("inf")

        def save(final=False):
            s = dict(st, elapsed=elapsed(), done=final)
            torch.save({"params": tr.state(), "param_names": self.param_names(), "opt": opt.state_dict(), "state": s,
                        "rng": {"python": random.getstate(), "torch": torch.get_rng_state()}, "config": cfg},
                       ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            src = (f"tools/sac/train.py {self.name} rank {a.rank}; stage {st['stage']} step {st['step']} "
                   f"({st['examples']} examples); {'final' if final else 'checkpoint'}; "
                   f"data tools/data/prepare_qa.py (quoref+drop train split, shakespeare)")
            local = os.path.join(a.out, "adapter.safetensors")
            export(local, self.base, tr, a, self.facts, self.fingerprint, src)
            if a.export:
                stem = a.export[: -len(".safetensors")] if a.export.endswith(".safetensors") else a.export
                shutil.copyfile(local, a.export + ".tmp")
                os.replace(a.export + ".tmp", a.export)
                with open(stem + ".json", "w") as f:
                    json.dump(dict(cfg, progress=s), f, indent=1)
                shutil.copyfile(loss_csv, stem + ".loss.csv")
                shutil.copyfile(dev_csv, stem + ".dev.csv")

        def dev_eval():
            tr_mode = [p.requires_grad for p in tr.params()]
            r = self.evaluate()
            with open(dev_csv, "a") as f:
                f.write(f"{st['stage']},{st['step']},{st['examples']},{r['dev_loss']:.4f},{r['dev_loss_wrong']:.4f},"
                        f"{r['dev_gap']:.4f},{r['dev_f1']:.2f},{r['dev_questions']},{r['dev_f1_questions']},"
                        f"{r['dev_seconds']:.1f},{elapsed():.1f}\n")
            print(f"[{self.name}] dev @ stage {st['stage']} step {st['step']} ({st['examples']} ex): answer loss "
                  f"{r['dev_loss']:.3f} (wrong passage {r['dev_loss_wrong']:.3f}, gap {r['dev_gap']:.3f}), "
                  f"greedy F1 {r['dev_f1']:.1f} on {r['dev_f1_questions']} q, {r['dev_seconds']:.0f}s", flush=True)
            assert tr_mode == [p.requires_grad for p in tr.params()]

        def on_signal(sig, _frame):
            self.stop_requested = True
            print(f"[{self.name}] signal {sig}: checkpoint after this step", flush=True)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"[{self.name}] {cfg['trainable_params']} trainable; train {cfg['train_passages']} passages / "
              f"{cfg['train_questions']} questions; dev {cfg['dev_passages']} / {cfg['dev_questions']}; lm docs "
              f"{len(self.lm_docs)}; stage {st['stage']} steps {self.stage_steps(st['stage'])}; threads "
              f"{torch.get_num_threads()}; amp {a.amp}; teacher {a.teacher if self.teacher else None}", flush=True)
        if a.dev_at_start and not st.get("dev_at_start_done"):
            dev_eval()
            st["dev_at_start_done"] = True
        recent, steps_here = [], 0
        while not self.stop_requested:
            total = self.stage_steps(st["stage"])
            if st["step"] >= total:
                if st["stage"] == 1:
                    print(f"[{self.name}] stage 1 done at step {st['step']}", flush=True)
                    dev_eval()
                    st.update(stage=2, step=0, epoch=0, cursor=0, clipped=0)
                    opt = self.make_opt(2)
                    save()
                    continue
                dev_eval()
                save(final=True)
                print(f"[{self.name}] done: {st['examples']} QA examples, {elapsed() / 3600:.2f} h; exported "
                      f"{a.export or os.path.join(a.out, 'adapter.safetensors')}", flush=True)
                return
            if time.time() >= budget_end:
                print(f"[{self.name}] time budget reached", flush=True)
                break
            if a.max_steps and steps_here >= a.max_steps:
                print(f"[{self.name}] --max-steps {a.max_steps} reached", flush=True)
                break
            fac = self.lr_factor(st["stage"], st["step"])
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * fac
            ts = time.time()
            opt.zero_grad(set_to_none=True)
            tot = ce_s = kl_s = 0.0
            ntok = nq = 0
            with torch.autocast(self.dev, dtype=torch.bfloat16, enabled=a.amp):
                if st["stage"] == 1:
                    items, losses = [], []
                    while len(items) < a.lm_docs_per_step:
                        r = self.lm_loss(self.lm_docs[self.next_items(st, 1)[0]])
                        if r is None:
                            continue
                        items.append(r[1])
                        (r[0] / a.lm_docs_per_step).backward()
                        tot += r[0].item()
                        ntok += r[1]
                    nq = len(items)
                    ce_s = tot
                else:
                    ps = [self.train_passages[i] for i in self.next_items(st, a.passages_per_step)]
                    nq = sum(len(p["seqs"]) for p in ps)
                    for p in ps:
                        loss, ce, kl, k = self.passage_loss(p)
                        (loss / nq).backward()
                        tot += loss.item()
                        ce_s += ce
                        kl_s += kl
                        ntok += k
                    st["passages"] += len(ps)
            gn = torch.nn.utils.clip_grad_norm_(tr.params(), a.clip).item()
            clipped = int(gn > a.clip)
            opt.step()
            st["step"] += 1
            steps_here += 1
            st["examples"] += nq
            st["clipped"] += clipped
            dt = time.time() - ts
            recent = (recent + [dt])[-20:]
            lr = opt.param_groups[0]["lr"]
            with open(loss_csv, "a") as f:
                f.write(f"{st['stage']},{st['step']},{st['epoch']},{st['examples']},{st['passages']},{tot / nq:.5f},"
                        f"{ce_s / nq:.5f},{kl_s / nq:.5f},{ntok},{lr:.4g},{gn:.4f},{clipped},{dt:.2f},{elapsed():.1f}\n")
            if st["step"] % a.log_every == 0:
                eta = (total - st["step"]) * float(np.mean(recent))
                print(f"[{self.name}] stage {st['stage']} step {st['step']}/{total} ep {st['epoch']} loss "
                      f"{tot / nq:.3f} (ce {ce_s / nq:.3f} kl {kl_s / nq:.3f}) lr {lr:.2g} gnorm {gn:.2f} clipped "
                      f"{st['clipped']}/{st['step']} {dt:.1f}s/step ex {st['examples']} elapsed "
                      f"{elapsed() / 3600:.2f}h stage ETA {eta / 3600:.2f}h"
                      + (f" teacher cache {self.teacher.hits}/{self.teacher.hits + self.teacher.misses}"
                         if self.teacher else ""), flush=True)
            if a.dev_every and st["step"] % a.dev_every == 0:
                dev_eval()
            if st["step"] % a.ckpt_every == 0:
                save()
        save()
        print(f"[{self.name}] checkpoint written at stage {st['stage']} step {st['step']} "
              f"({st['examples']} examples, {elapsed() / 3600:.2f} h); resume with --resume", flush=True)


def export_checkpoint(a):
    """--export-only: the adapter (and its config, loss and dev CSVs) from OUT/ckpt.pt, without the
    training data: ships a run's latest checkpoint on a machine that cannot make the data."""
    ckpt = os.path.join(a.out, "ckpt.pt")
    if not os.path.exists(ckpt):
        raise SystemExit(f"{ckpt}: no checkpoint to export")
    if not a.export:
        raise SystemExit("--export-only needs --export PATH")
    ck = torch.load(ckpt, weights_only=False)
    cfg, st = ck["config"], ck["state"]
    facts = model_facts(a.model)
    fingerprint = model_fingerprint(a.model, facts)
    if cfg.get("base_model") != fingerprint:
        raise SystemExit(f"{ckpt} was trained on base model {cfg.get('base_model')}, --model is {fingerprint}")
    for k in ("full_ft", "ratio", "rank", "lora_scale", "bos_id", "eos_id"):
        setattr(a, k, cfg[k])
    base = Base(a.model, "cpu", torch.float32)
    tr = Trainable(base, a.rank, a.lora_scale, None if a.full_ft else a.ratio, a.seed, role_std=a.role_init_std)
    if len(ck["params"]) != len(tr.params()):
        raise SystemExit(f"{ckpt}: {len(ck['params'])} tensors, this trainer has {len(tr.params())}")
    tr.load(ck["params"])
    name = "fullft" if a.full_ft else f"r{a.ratio}"
    src = (f"tools/sac/train.py {name} rank {a.rank}; stage {st['stage']} step {st['step']} "
           f"({st['examples']} examples); {'final' if st.get('done') else 'checkpoint'}; "
           f"data tools/data/prepare_qa.py (quoref+drop train split, shakespeare)")
    export(a.export, base, tr, a, facts, fingerprint, src)
    stem = a.export[: -len(".safetensors")] if a.export.endswith(".safetensors") else a.export
    with open(stem + ".json", "w") as f:
        json.dump(dict(cfg, progress=st), f, indent=1)
    for part in ("loss", "dev"):
        shutil.copyfile(os.path.join(a.out, f"{part}.csv"), f"{stem}.{part}.csv")
    print(f"[{name}] exported {ckpt} (stage {st['stage']} step {st['step']}, {st['examples']} examples) to {a.export}")


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
    ap.add_argument("--role-init-std", type=float, default=0.02)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = every core)")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 base instead of bf16 + autocast")
    ap.add_argument("--stage1-steps", type=int, default=300, help="stage-1 optimizer steps (0 = skip)")
    ap.add_argument("--lm-docs-per-step", type=int, default=4)
    ap.add_argument("--stage1-max-tokens", type=int, default=2040, help="stage-1 document length cap (split in half)")
    ap.add_argument("--stage2-epochs", type=float, default=1.0)
    ap.add_argument("--stage2-steps", type=int, default=0, help="override: stage-2 optimizer steps")
    ap.add_argument("--passages-per-step", type=int, default=4, help="passages per step (all their questions)")
    ap.add_argument("--time-budget-min", type=float, default=0, help="checkpoint and stop after this long (0 = none)")
    ap.add_argument("--lr1", type=float, default=1e-3)
    ap.add_argument("--lr2", type=float, default=1e-3)
    ap.add_argument("--embed-lr-mult", type=float, default=10.0, help="role tokens and [LM]: this x the LoRA rate")
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine floor, a fraction of the peak")
    ap.add_argument("--warmup", type=int, default=30, help="warm-up steps per stage")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=20.0, help="grad-norm clip; meant to fire on spikes only (clipped count logged)")
    ap.add_argument("--teacher", help="Full-FT LoRA file: distil its full-context next-token distribution")
    ap.add_argument("--teacher-topk", type=int, default=16)
    ap.add_argument("--teacher-cache", default=os.path.join(ROOT, "data", "teacher"),
                    help="folder of cached teacher top-k (git-ignored; recomputed when missing)")
    ap.add_argument("--kl-weight", type=float, default=1.0)
    ap.add_argument("--kl-question-weight", type=float, default=0.1, help="question rows' KL weight vs answer rows")
    ap.add_argument("--max-context-tokens", type=int, default=4080, help="safety cap (training passages fit)")
    ap.add_argument("--max-answer-tokens", type=int, default=32)
    ap.add_argument("--dev-questions-per-task", type=int, default=150)
    ap.add_argument("--dev-limit-passages", type=int, default=0, help="score only the first N dev passages")
    ap.add_argument("--dev-every", type=int, default=200, help="steps between dev evaluations (0 = stage ends only)")
    ap.add_argument("--dev-f1-questions", type=int, default=64)
    ap.add_argument("--dev-max-new-tokens", type=int, default=24)
    ap.add_argument("--dev-at-start", action="store_true", help="score the dev set before the first step")
    ap.add_argument("--bos-id", type=int, default=1)
    ap.add_argument("--eos-id", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-passages", type=int, default=0, help="use only the first N passages / docs (dry runs)")
    ap.add_argument("--max-steps", type=int, default=0, help="checkpoint and stop after N steps of this invocation (dry runs)")
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--init-from", help="warm start: LoRA/[LM]/role tokens from another run's ckpt.pt")
    ap.add_argument("--out", required=True, help="run directory (ckpt.pt, loss.csv, dev.csv, config.json)")
    ap.add_argument("--export", help="adapter path (.safetensors); config, loss and dev CSVs are copied next to it")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt where it exists")
    ap.add_argument("--export-only", action="store_true", help="write --export from OUT/ckpt.pt and stop (no data needed)")
    ap.add_argument("--log-every", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    if args.export_only:
        export_checkpoint(args)
        return
    Trainer(args).run()


if __name__ == "__main__":
    main()
