"""Independent float64 numpy reference implementation of the Llama architecture.

Written from the HF transformers LlamaModel semantics (rotate-half RoPE,
RMSNorm, SwiGLU MLP, grouped-query attention, tied embeddings) and the GGUF
format facts.  Intended only for producing golden files; clarity over speed.

Main entry points
-----------------
load_gguf(path)            -> LlamaModel  (dequantized, attn_q/attn_k rows
                                            un-permuted back to HF order)
gguf_tokenizer(path)       -> tokenizers.Tokenizer built from GGUF metadata
load_hf_dir(path)          -> (LlamaModel, tokenizers.Tokenizer)
read_safetensors(path)     -> {name: float32 ndarray}   (F32/F16/BF16)
write_safetensors(path, tensors)  tensors: {name: (dtype_str, ndarray)}
LlamaModel.forward(...)    -> dict(hidden=..., logits=..., captures=...)
KVCache                    incremental decoding state
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np


# ----------------------------------------------------------------------------
# Config / RoPE
# ----------------------------------------------------------------------------

@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = True


def rope_inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """Inverse frequencies (float64, length head_dim/2), HF formula incl. llama3 scaling."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    rs = cfg.rope_scaling
    if rs:
        rtype = rs.get("rope_type", rs.get("type"))
        if rtype == "llama3":
            factor = float(rs["factor"])
            low = float(rs["low_freq_factor"])
            high = float(rs["high_freq_factor"])
            old_ctx = float(rs["original_max_position_embeddings"])
            low_freq_wavelen = old_ctx / low
            high_freq_wavelen = old_ctx / high
            wavelen = 2.0 * math.pi / inv_freq
            inv_l = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
            smooth = (old_ctx / wavelen - low) / (high - low)
            smoothed = (1.0 - smooth) * inv_l / factor + smooth * inv_l
            is_medium = (~(wavelen < high_freq_wavelen)) & (~(wavelen > low_freq_wavelen))
            inv_freq = np.where(is_medium, smoothed, inv_l)
        elif rtype in (None, "default"):
            pass
        else:
            raise NotImplementedError(f"rope_scaling type {rtype!r}")
    return inv_freq


def rotate_half(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

@dataclass
class LayerWeights:
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    wq: np.ndarray  # [in, out]  (transposed HF [out, in]); HF row order
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    wg: np.ndarray
    wu: np.ndarray
    wd: np.ndarray


@dataclass
class KVCache:
    """Per layer: K (after RoPE) and V, shape [n_kv_heads, T, head_dim]."""
    k: list = field(default_factory=list)
    v: list = field(default_factory=list)
    next_pos: int = 0

    @property
    def length(self) -> int:
        return 0 if not self.k else self.k[0].shape[1]


@dataclass
class LoRA:
    """LoRA on q_proj and v_proj of every layer: delta = scale * (x @ A) @ B.
    q_A[i]: [hidden, r], q_B[i]: [r, n_heads*head_dim] (HF row order);
    v_A[i]: [hidden, r], v_B[i]: [r, n_kv_heads*head_dim]."""
    scale: float
    q_A: list
    q_B: list
    v_A: list
    v_B: list


class LlamaModel:
    def __init__(self, cfg: LlamaConfig, embed: np.ndarray, layers: list[LayerWeights],
                 final_norm: np.ndarray, lm_head: np.ndarray | None = None, dtype=np.float64):
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.embed = np.ascontiguousarray(embed, dtype=self.dtype)          # [V, H]
        self.layers = layers
        self.final_norm = final_norm.astype(self.dtype)
        self.lm_head = None if lm_head is None else np.ascontiguousarray(lm_head, dtype=self.dtype)  # [V, H]
        self.inv_freq = rope_inv_freq(cfg)
        # False: HF rotate-half RoPE (weights in HF row order, the reference default).
        # True: GPT-J / llama.cpp interleaved RoPE (pairs 2i, 2i+1) for weights left in GGUF row
        # order; only used by check_reference.py to verify the un-permutation claim.
        self.rope_interleaved = False

    def astype(self, dtype) -> "LlamaModel":
        """Copy of the model with all weights and arithmetic in `dtype`."""
        dt = np.dtype(dtype)
        layers = [LayerWeights(**{k: np.ascontiguousarray(getattr(L, k), dtype=dt)
                                  for k in LayerWeights.__dataclass_fields__}) for L in self.layers]
        m = LlamaModel(self.cfg, self.embed, layers, self.final_norm, self.lm_head, dtype=dt)
        m.rope_interleaved = self.rope_interleaved
        return m

    # -- pieces -------------------------------------------------------------
    def rmsnorm(self, x, w):
        eps = self.dtype.type(self.cfg.rms_norm_eps)
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope_cos_sin(self, positions):
        ang = np.asarray(positions, dtype=np.float64)[:, None] * self.inv_freq[None, :]
        if self.rope_interleaved:
            emb = np.repeat(ang, 2, axis=-1)               # [T, d]: f0 f0 f1 f1 ...
        else:
            emb = np.concatenate([ang, ang], axis=-1)      # [T, d]: f0 f1 ... f0 f1 ...
        return np.cos(emb).astype(self.dtype), np.sin(emb).astype(self.dtype)

    def apply_rope(self, x, cos, sin):
        if self.rope_interleaved:
            r = np.empty_like(x)
            r[..., 0::2] = -x[..., 1::2]
            r[..., 1::2] = x[..., 0::2]
            return x * cos + r * sin
        return x * cos + rotate_half(x) * sin

    def logits_from_hidden(self, h):
        W = self.embed if self.lm_head is None else self.lm_head
        return h @ W.T

    # -- forward ------------------------------------------------------------
    def forward(self, ids=None, *, positions=None, causal=True, cache: KVCache | None = None,
                embed_additions: dict | None = None, lora: LoRA | None = None,
                capture_kv: bool = False, logits_rows="last", embed_replacements: dict | None = None):
        """Run the model over a chunk of tokens.

        ids: token ids [T].  positions: RoPE position ids [T] (default: cache.next_pos ...).
        causal: True -> row i attends to all cached rows and chunk rows <= i; False -> all rows.
        cache: KVCache, updated in place (K stored after RoPE).
        embed_additions: {row_index_in_chunk: vector[H]} added to the input embeddings.
        embed_replacements: {row_index_in_chunk: vector[H]} used INSTEAD of the token embedding
            (the id at that row is ignored; e.g. SAC's learned [LM] row). Applied before additions.
        lora: LoRA applied to q_proj/v_proj outputs (before RoPE).
        capture_kv: record per-layer K (BEFORE RoPE) and V, each [T, n_kv*head_dim].
        logits_rows: "last", "all", None, or a list of row indices.
        Returns dict(hidden=[T,H] final-normed, logits=..., captures=[(K,V)] or None).
        """
        cfg, dt = self.cfg, self.dtype
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        x = self.embed[ids].astype(dt, copy=True)
        if embed_replacements:
            for r, vec in embed_replacements.items():
                x[r] = np.asarray(vec, dtype=np.float64).astype(dt)
        if embed_additions:
            for r, vec in embed_additions.items():
                x[r] += np.asarray(vec, dtype=np.float64).astype(dt)
        if positions is None:
            start = cache.next_pos if cache is not None else 0
            positions = np.arange(start, start + T)
        positions = np.asarray(positions, dtype=np.int64)
        cos, sin = self.rope_cos_sin(positions)
        nh, nkv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        group = nh // nkv
        scale = dt.type(1.0 / math.sqrt(d))
        captures = [] if capture_kv else None
        past = cache.length if cache is not None else 0
        if causal:
            S = past + T
            mask = np.arange(S)[None, :] > (past + np.arange(T))[:, None]  # [T, S] True = blocked

        for li, L in enumerate(self.layers):
            h = self.rmsnorm(x, L.attn_norm)
            q = h @ L.wq
            k = h @ L.wk
            v = h @ L.wv
            if lora is not None:
                ls = dt.type(lora.scale)
                q = q + ls * ((h @ lora.q_A[li].astype(dt)) @ lora.q_B[li].astype(dt))
                v = v + ls * ((h @ lora.v_A[li].astype(dt)) @ lora.v_B[li].astype(dt))
            if capture_kv:
                captures.append((k.copy(), v.copy()))
            q = q.reshape(T, nh, d).transpose(1, 0, 2)     # [nh, T, d]
            k = k.reshape(T, nkv, d).transpose(1, 0, 2)    # [nkv, T, d]
            v = v.reshape(T, nkv, d).transpose(1, 0, 2)
            q = self.apply_rope(q, cos, sin)
            k = self.apply_rope(k, cos, sin)
            if cache is not None:
                if len(cache.k) <= li:
                    cache.k.append(k)
                    cache.v.append(v)
                else:
                    cache.k[li] = np.concatenate([cache.k[li], k], axis=1)
                    cache.v[li] = np.concatenate([cache.v[li], v], axis=1)
                k, v = cache.k[li], cache.v[li]
            kr = np.repeat(k, group, axis=0)   # HF repeat_kv: query head j uses kv head j // group
            vr = np.repeat(v, group, axis=0)
            scores = (q @ kr.transpose(0, 2, 1)) * scale   # [nh, T, S]
            if causal:
                scores = np.where(mask[None], -np.inf, scores)
            scores = scores - scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p = p / p.sum(axis=-1, keepdims=True)
            o = (p @ vr).transpose(1, 0, 2).reshape(T, nh * d)
            x = x + o @ L.wo
            h = self.rmsnorm(x, L.ffn_norm)
            g = h @ L.wg
            u = h @ L.wu
            x = x + ((g / (1 + np.exp(-g))) * u) @ L.wd

        if cache is not None:
            cache.next_pos = int(positions[-1]) + 1
        hidden = self.rmsnorm(x, self.final_norm)
        if logits_rows is None:
            logits = None
        elif logits_rows == "last":
            logits = self.logits_from_hidden(hidden[-1])
        elif logits_rows == "all":
            logits = self.logits_from_hidden(hidden)
        else:
            logits = self.logits_from_hidden(hidden[list(logits_rows)])
        return dict(hidden=hidden, logits=logits, captures=captures)

    def greedy(self, prompt_ids, n_new, *, keep_logits=True):
        """Greedy decode with a KV cache. Returns (new_ids, [logits per step], last_prompt_hidden).
        Step 0 logits: after prefill at the last prompt position; step i: after feeding new_ids[i-1].
        n_new tokens produce n_new + 1 logit vectors."""
        cache = KVCache()
        out = self.forward(prompt_ids, cache=cache)
        last_hidden = out["hidden"][-1].copy()
        logits = [out["logits"]]
        new = []
        for _ in range(n_new):
            t = int(np.argmax(logits[-1]))
            new.append(t)
            logits.append(self.forward([t], cache=cache)["logits"])
        return new, logits, last_hidden

    def teacher_forced_logits(self, prompt_ids, forced_ids):
        """Logits at the last prompt position and after each forced id (len(forced_ids)+1)."""
        cache = KVCache()
        out = self.forward(prompt_ids, cache=cache)
        logits = [out["logits"]]
        hidden = [out["hidden"][-1].copy()]
        for t in forced_ids:
            logits.append(self.forward([int(t)], cache=cache)["logits"])
        return logits, hidden[0]


# ----------------------------------------------------------------------------
# GGUF loading
# ----------------------------------------------------------------------------

def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's convert_hf_to_gguf permutation of attn_q / attn_k rows.

    GGUF row h*d + 2*i + j  <->  HF row h*d + j*(d/2) + i   (i < d/2, j in {0,1}).
    w: [out, in] in GGUF order -> [out, in] in HF order."""
    out, inp = w.shape
    d = out // n_heads
    return w.reshape(n_heads, d // 2, 2, inp).transpose(0, 2, 1, 3).reshape(out, inp)


def _gguf_field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_gguf(path: str, *, unpermute: bool = True, dtype=np.float64) -> LlamaModel:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(path)
    arch = _gguf_field(r, "general.architecture")
    assert arch == "llama", arch
    p = lambda k, dflt=None: _gguf_field(r, f"llama.{k}", dflt)
    H = int(p("embedding_length"))
    nh = int(p("attention.head_count"))
    nkv = int(p("attention.head_count_kv"))
    tensors = {t.name: t for t in r.tensors}

    def deq(name):
        t = tensors[name]
        return dequantize(t.data, t.tensor_type).astype(np.float64)

    embed = deq("token_embd.weight")
    V = embed.shape[0]
    cfg = LlamaConfig(
        vocab_size=int(p("vocab_size", V)), hidden_size=H,
        intermediate_size=int(p("feed_forward_length")), num_layers=int(p("block_count")),
        num_heads=nh, num_kv_heads=nkv, head_dim=int(p("rope.dimension_count", H // nh)),
        rms_norm_eps=float(p("attention.layer_norm_rms_epsilon")),
        rope_theta=float(p("rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in tensors,
    )
    layers = []
    for i in range(cfg.num_layers):
        b = f"blk.{i}."
        wq, wk = deq(b + "attn_q.weight"), deq(b + "attn_k.weight")
        if unpermute:
            wq, wk = unpermute_qk(wq, nh), unpermute_qk(wk, nkv)
        layers.append(LayerWeights(
            attn_norm=deq(b + "attn_norm.weight").astype(dtype),
            ffn_norm=deq(b + "ffn_norm.weight").astype(dtype),
            wq=np.ascontiguousarray(wq.T, dtype=dtype), wk=np.ascontiguousarray(wk.T, dtype=dtype),
            wv=np.ascontiguousarray(deq(b + "attn_v.weight").T, dtype=dtype),
            wo=np.ascontiguousarray(deq(b + "attn_output.weight").T, dtype=dtype),
            wg=np.ascontiguousarray(deq(b + "ffn_gate.weight").T, dtype=dtype),
            wu=np.ascontiguousarray(deq(b + "ffn_up.weight").T, dtype=dtype),
            wd=np.ascontiguousarray(deq(b + "ffn_down.weight").T, dtype=dtype),
        ))
    lm_head = None if cfg.tie_word_embeddings else deq("output.weight")
    return LlamaModel(cfg, embed, layers, deq("output_norm.weight"), lm_head, dtype=dtype)


def gguf_tokenizer(path: str):
    """HF tokenizers.Tokenizer equivalent to the GGUF 'gpt2' (byte-level BPE) tokenizer."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    r = GGUFReader(path)
    assert _gguf_field(r, "tokenizer.ggml.model") == "gpt2"
    tokens = _gguf_field(r, "tokenizer.ggml.tokens")
    merges = _gguf_field(r, "tokenizer.ggml.merges")
    types = _gguf_field(r, "tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(tokens[i], special=True, normalized=False)
                for i, ty in enumerate(types) if int(ty) == 3]
    tok.add_special_tokens(specials)
    return tok


# ----------------------------------------------------------------------------
# safetensors (F32 / F16 / BF16) read & write without torch
# ----------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def f32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """Round float32 -> bfloat16 (round to nearest even), returned as uint16 bit patterns."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 values exactly representable in bfloat16."""
    return bf16_bits_to_f32(f32_to_bf16_bits(a)).reshape(np.shape(a))


def read_safetensors(path: str) -> dict:
    """{name: float32 ndarray} for F32/F16/BF16 tensors (F64 kept as float64)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            raw = bf16_bits_to_f32(raw).reshape(info["shape"])
        elif info["dtype"] == "F16":
            raw = raw.astype(np.float32)
        out[name] = raw
    return out


def safetensors_dtypes(path: str) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def write_safetensors(path: str, tensors: dict, metadata: dict | None = None):
    """tensors: {name: (dtype_str in F32/F16/BF16, float ndarray)}; written in sorted name order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dts, arr = tensors[name]
        arr = np.asarray(arr)
        if dts == "BF16":
            raw = f32_to_bf16_bits(arr.astype(np.float32)).tobytes()
        else:
            raw = np.ascontiguousarray(arr, dtype=_ST_DTYPES[dts]).astype("<" + np.dtype(_ST_DTYPES[dts]).str[1:]).tobytes()
        header[name] = {"dtype": dts, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header = {"__metadata__": metadata, **header}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------
# HF directory loading
# ----------------------------------------------------------------------------

def load_hf_dir(path: str, dtype=np.float64):
    """Load config.json + model.safetensors + tokenizer.json of an HF Llama checkpoint."""
    from tokenizers import Tokenizer

    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    nh = c["num_attention_heads"]
    cfg = LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"], num_layers=c["num_hidden_layers"],
        num_heads=nh, num_kv_heads=c.get("num_key_value_heads", nh),
        head_dim=c.get("head_dim") or c["hidden_size"] // nh,
        rms_norm_eps=c.get("rms_norm_eps", 1e-6), rope_theta=c.get("rope_theta", 10000.0),
        rope_scaling=c.get("rope_scaling"), tie_word_embeddings=c.get("tie_word_embeddings", False),
    )
    W = {k: v.astype(np.float64) for k, v in read_safetensors(os.path.join(path, "model.safetensors")).items()}
    T = lambda n: np.ascontiguousarray(W[n].T, dtype=dtype)
    layers = []
    for i in range(cfg.num_layers):
        b = f"model.layers.{i}."
        layers.append(LayerWeights(
            attn_norm=W[b + "input_layernorm.weight"].astype(dtype),
            ffn_norm=W[b + "post_attention_layernorm.weight"].astype(dtype),
            wq=T(b + "self_attn.q_proj.weight"), wk=T(b + "self_attn.k_proj.weight"),
            wv=T(b + "self_attn.v_proj.weight"), wo=T(b + "self_attn.o_proj.weight"),
            wg=T(b + "mlp.gate_proj.weight"), wu=T(b + "mlp.up_proj.weight"),
            wd=T(b + "mlp.down_proj.weight"),
        ))
    lm_head = None
    if not cfg.tie_word_embeddings or "lm_head.weight" in W:
        lm_head = W.get("lm_head.weight")
    model = LlamaModel(cfg, W["model.embed_tokens.weight"], layers, W["model.norm.weight"], lm_head, dtype=dtype)
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    return model, tok
