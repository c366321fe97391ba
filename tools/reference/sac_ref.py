"""Independent float64 numpy reference for Semantic-Anchor Compression (SAC).

Written from ../shared/spec/SAC.md (and the adapter/fingerprint formats agreed for AnchorKV),
on top of llama_ref.py.  Used only to produce golden files; clarity over speed.

Main entry points
-----------------
anchor_indices(L, r)              local anchor indices of one window of length L
window_lengths(N)                 lengths of the 510-token windows covering N tokens
anchor_positions(N, r)            global 1-based positions of all anchors
model_fingerprint(path)           base-model fingerprint of a .gguf file or an HF directory
model_facts(path)                 dict(layers, hidden, heads, kv_heads, head_dim, ffn, vocab, bos_id, eos_id, name)
write_adapter(path, ...) / read_adapter(path)   the "anchorkv.sac-adapter" safetensors format
encoder_input_ids(tok, text, header, bos_id)    [bos] + tok(header) + tok(text)
encode(model, ids, adapter|None, ratio)          -> SACEncoding (per-layer anchor K pre-RoPE, V)
decoder_prefill / decode_logits / greedy        the decoder (frozen base model, causal)

Conventions: K/V are [n_anchors, kv_heads*head_dim] per layer, columns kv_head*head_dim + dim,
HF (un-permuted) row order; K is captured BEFORE RoPE and rotated at the anchor's global
position when it is used as past KV.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from llama_ref import KVCache, LoRA, bf16_bits_to_f32, write_safetensors

WINDOW = 510
ADAPTER_FORMAT = "anchorkv.sac-adapter"
ADAPTER_FORMAT_VERSION = "1"
CONTEXT_HEADER = "### Context:\n"
QUESTION_PREFIX = "\n### Question:\n"
ANSWER_PREFIX = "\n### Answer:\n"


# ----------------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------------

def anchor_indices(L: int, r: int) -> list[int]:
    """Local anchor indices of a window of length L at ratio r: o, o+r, ... < L with
    o = (r-1)//2; a window with L <= o gets exactly one anchor at local index 0."""
    if L <= 0:
        return []
    o = (r - 1) // 2
    if L <= o:
        return [0]
    return list(range(o, L, r))


def window_lengths(N: int, window: int = WINDOW) -> list[int]:
    full, rest = divmod(N, window)
    return [window] * full + ([rest] if rest else [])


def anchor_positions(N: int, r: int, window: int = WINDOW) -> list[int]:
    """Global 1-based positions of all anchors (window c covers c*window+1 ... c*window+L)."""
    out = []
    for c, L in enumerate(window_lengths(N, window)):
        out += [c * window + 1 + i for i in anchor_indices(L, r)]
    return out


# ----------------------------------------------------------------------------
# Base-model facts and fingerprint
# ----------------------------------------------------------------------------

def _safetensors_header(path: str):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return header, 8 + n


def _first_int(v):
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else None
    return None if v is None else int(v)


def model_facts(path: str) -> dict:
    """Architecture numbers, special ids and the raw token-embedding bytes' location.

    vocab = number of rows of the token-embedding tensor (in both formats)."""
    if os.path.isdir(path):
        with open(os.path.join(path, "config.json")) as f:
            c = json.load(f)
        st = os.path.join(path, "model.safetensors")
        header, base = _safetensors_header(st)
        emb = header["model.embed_tokens.weight"]
        nh = int(c["num_attention_heads"])
        bos, eos = _first_int(c.get("bos_token_id")), _first_int(c.get("eos_token_id"))
        if bos is None or eos is None:
            bos2, eos2 = _hf_special_ids_from_tokenizer(path)
            bos = bos if bos is not None else bos2
            eos = eos if eos is not None else eos2
        return dict(
            kind="hf", name=c.get("_name_or_path") or os.path.basename(os.path.normpath(path)),
            layers=int(c["num_hidden_layers"]), hidden=int(c["hidden_size"]), heads=nh,
            kv_heads=int(c.get("num_key_value_heads", nh)),
            head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // nh),
            ffn=int(c["intermediate_size"]), vocab=int(emb["shape"][0]),
            bos_id=bos, eos_id=eos,
            _embed_file=st, _embed_range=(base + emb["data_offsets"][0], base + emb["data_offsets"][1]),
        )
    from gguf import GGUFReader

    r = GGUFReader(path)

    def fld(k, d=None):
        f = r.fields.get(k)
        return d if f is None else f.contents()

    arch = fld("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r}, expected llama")
    H = int(fld("llama.embedding_length"))
    nh = int(fld("llama.attention.head_count"))
    t = next((t for t in r.tensors if t.name == "token_embd.weight"), None)
    if t is None:
        raise ValueError(f"{path}: no token_embd.weight")
    off = int(t.data_offset)
    return dict(
        kind="gguf", name=fld("general.name") or os.path.basename(path),
        layers=int(fld("llama.block_count")), hidden=H, heads=nh,
        kv_heads=int(fld("llama.attention.head_count_kv", nh)),
        head_dim=int(fld("llama.attention.key_length", H // nh)),
        ffn=int(fld("llama.feed_forward_length")), vocab=int(t.data.shape[0]),
        bos_id=_first_int(fld("tokenizer.ggml.bos_token_id")),
        eos_id=_first_int(fld("tokenizer.ggml.eos_token_id")),
        _embed_file=path, _embed_range=(off, off + int(t.n_bytes)),
        _embed_bytes=t.data.tobytes(),
    )


def _hf_special_ids_from_tokenizer(path: str):
    bos = eos = None
    tc = os.path.join(path, "tokenizer_config.json")
    tj = os.path.join(path, "tokenizer.json")
    if os.path.exists(tc) and os.path.exists(tj):
        with open(tc) as f:
            c = json.load(f)
        with open(tj) as f:
            added = {a["content"]: a["id"] for a in json.load(f).get("added_tokens", [])}
        tokname = lambda v: v.get("content") if isinstance(v, dict) else v
        bos = added.get(tokname(c.get("bos_token")))
        eos = added.get(tokname(c.get("eos_token")))
    return bos, eos


def canonical_string(facts: dict) -> str:
    return (f"llama|layers={facts['layers']}|hidden={facts['hidden']}|heads={facts['heads']}"
            f"|kv_heads={facts['kv_heads']}|head_dim={facts['head_dim']}|ffn={facts['ffn']}"
            f"|vocab={facts['vocab']}|")


def raw_embedding_bytes(facts: dict) -> bytes:
    a, b = facts["_embed_range"]
    with open(facts["_embed_file"], "rb") as f:
        f.seek(a)
        raw = f.read(b - a)
    if len(raw) != b - a:
        raise ValueError(f"{facts['_embed_file']}: truncated token embedding")
    if "_embed_bytes" in facts:
        assert raw == facts["_embed_bytes"], "GGUF tensor offset arithmetic disagrees with gguf-py"
    return raw


def model_fingerprint(path: str, facts: dict | None = None) -> str:
    """sha256(canonical.encode() + raw token-embedding bytes).hexdigest()[:32]."""
    facts = facts or model_facts(path)
    h = hashlib.sha256(canonical_string(facts).encode())
    h.update(raw_embedding_bytes(facts))
    return h.hexdigest()[:32]


# ----------------------------------------------------------------------------
# Adapter file
# ----------------------------------------------------------------------------

@dataclass
class SACAdapter:
    role_tokens: np.ndarray        # [mem_size, hidden] float32 (bf16 values when stored as BF16)
    special_tokens: np.ndarray     # [2, hidden]; row 1 = [LM]
    q_A: list                      # [hidden, rank] per layer
    q_B: list                      # [rank, heads*head_dim]
    v_A: list
    v_B: list
    metadata: dict = field(default_factory=dict)

    @property
    def ratio(self) -> int:
        return int(self.metadata["ratio"])

    @property
    def lora_scale(self) -> float:
        return float(self.metadata["lora_scale"])

    def lora(self) -> LoRA:
        return LoRA(scale=self.lora_scale, q_A=self.q_A, q_B=self.q_B, v_A=self.v_A, v_B=self.v_B)


def adapter_metadata(*, ratio: int, lora_rank: int, lora_scale: float, hidden: int, layers: int,
                     base_model: str, base_model_name: str, bos_id: int, eos_id: int,
                     source: str) -> dict:
    return {
        "format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION,
        "ratio": str(ratio), "window": str(WINDOW), "mem_size": str(WINDOW // ratio),
        "lora_rank": str(lora_rank), "lora_scale": str(float(lora_scale)),
        "hidden_size": str(hidden), "num_layers": str(layers),
        "base_model": base_model, "base_model_name": base_model_name,
        "bos_id": str(bos_id), "eos_id": str(eos_id),
        "context_header": CONTEXT_HEADER, "question_prefix": QUESTION_PREFIX,
        "answer_prefix": ANSWER_PREFIX, "anchor_selection": "uniform", "source": source,
    }


def adapter_tensors(role, special, q_A, q_B, v_A, v_B, dtype="BF16") -> dict:
    t = {"role_tokens": (dtype, role), "special_tokens": (dtype, special)}
    for i in range(len(q_A)):
        t[f"layers.{i}.q_proj.lora_A"] = (dtype, q_A[i])
        t[f"layers.{i}.q_proj.lora_B"] = (dtype, q_B[i])
        t[f"layers.{i}.v_proj.lora_A"] = (dtype, v_A[i])
        t[f"layers.{i}.v_proj.lora_B"] = (dtype, v_B[i])
    return t


def write_adapter(path: str, role, special, q_A, q_B, v_A, v_B, metadata: dict, dtype="BF16"):
    """BF16 tensors are rounded to nearest even from float32 (callers wanting exact values pass
    bf16-representable floats).  Header: sorted names, __metadata__ first, padded to 8 bytes."""
    write_safetensors(path, adapter_tensors(role, special, q_A, q_B, v_A, v_B, dtype), metadata=metadata)


def read_adapter_raw(path: str):
    """({name: (dtype, shape, raw bytes)}, metadata)."""
    header, base = _safetensors_header(path)
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    with open(path, "rb") as f:
        data = f.read()[base:]
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], tuple(info["shape"]), data[a:b])
    return out, meta


def _to_f32(dtype, shape, raw):
    if dtype == "BF16":
        return bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(shape)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    raise ValueError(f"unsupported adapter dtype {dtype}")


def read_adapter(path: str) -> SACAdapter:
    raw, meta = read_adapter_raw(path)
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path}: not an {ADAPTER_FORMAT} file (format={meta.get('format')!r})")
    T = {k: _to_f32(*v) for k, v in raw.items()}
    n = int(meta["num_layers"])
    return SACAdapter(
        role_tokens=T["role_tokens"], special_tokens=T["special_tokens"],
        q_A=[T[f"layers.{i}.q_proj.lora_A"] for i in range(n)],
        q_B=[T[f"layers.{i}.q_proj.lora_B"] for i in range(n)],
        v_A=[T[f"layers.{i}.v_proj.lora_A"] for i in range(n)],
        v_B=[T[f"layers.{i}.v_proj.lora_B"] for i in range(n)],
        metadata=meta,
    )


# ----------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------

def tok_ids(tok, s: str) -> list[int]:
    return tok.encode(s, add_special_tokens=False).ids


def encoder_input_ids(tok, text: str, header: str = CONTEXT_HEADER, bos_id: int = 1) -> list[int]:
    return [bos_id] + tok_ids(tok, header) + tok_ids(tok, text)


def question_ids(tok, question: str, qp: str = QUESTION_PREFIX, ap: str = ANSWER_PREFIX) -> list[int]:
    return tok_ids(tok, qp) + tok_ids(tok, question) + tok_ids(tok, ap)


@dataclass
class SACEncoding:
    k: list                 # per layer [n_anchors, kv_dim], BEFORE RoPE
    v: list                 # per layer [n_anchors, kv_dim]
    positions: list         # global 1-based anchor positions
    window_lengths: list
    n_context: int          # N
    with_lm: bool           # decoder starts with the [LM] row (adapter) or not (baseline)


def encode(model, ids, adapter: SACAdapter | None, ratio: int | None = None) -> SACEncoding:
    """SAC encoder.  adapter=None: training-free baseline (plain model, no LoRA/role tokens,
    ONE causal pass over the whole input at positions 1..N, keep the anchors' K/V)."""
    ids = list(map(int, ids))
    N = len(ids)
    if ratio is None:
        ratio = adapter.ratio
    if adapter is not None and adapter.ratio != ratio:
        raise ValueError(f"ratio {ratio} != adapter ratio {adapter.ratio}")
    wl = window_lengths(N)
    nl = model.cfg.num_layers
    ks, vs = [[] for _ in range(nl)], [[] for _ in range(nl)]
    pos = []
    if adapter is None:
        res = model.forward(ids, positions=np.arange(1, N + 1), causal=True, capture_kv=True,
                            logits_rows=None)
        rows = [p - 1 for p in anchor_positions(N, ratio)]
        for l, (K, V) in enumerate(res["captures"]):
            ks[l].append(K[rows])
            vs[l].append(V[rows])
        pos = anchor_positions(N, ratio)
    else:
        lora = adapter.lora()
        for c, L in enumerate(wl):
            s = c * WINDOW
            local = anchor_indices(L, ratio)
            adds = {i: adapter.role_tokens[kk] for kk, i in enumerate(local)}
            res = model.forward(ids[s:s + L], positions=np.arange(s + 1, s + L + 1), causal=False,
                                embed_additions=adds, lora=lora, capture_kv=True, logits_rows=None)
            for l, (K, V) in enumerate(res["captures"]):
                ks[l].append(K[local])
                vs[l].append(V[local])
            pos += [s + 1 + i for i in local]
    return SACEncoding(k=[np.concatenate(x, axis=0) for x in ks], v=[np.concatenate(x, axis=0) for x in vs],
                       positions=pos, window_lengths=wl, n_context=N, with_lm=adapter is not None)


# ----------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------

def past_cache(model, enc: SACEncoding) -> KVCache:
    """Anchor KVs as a past cache: K rotated at each anchor's global position."""
    cfg = model.cfg
    dt = model.dtype
    cos, sin = model.rope_cos_sin(np.asarray(enc.positions))
    cache = KVCache()
    n = len(enc.positions)
    for K, V in zip(enc.k, enc.v):
        k = np.asarray(K, dtype=dt).reshape(n, cfg.num_kv_heads, cfg.head_dim).transpose(1, 0, 2)
        v = np.asarray(V, dtype=dt).reshape(n, cfg.num_kv_heads, cfg.head_dim).transpose(1, 0, 2)
        cache.k.append(model.apply_rope(k, cos, sin))
        cache.v.append(np.ascontiguousarray(v))
    return cache


def decoder_prefill(model, enc: SACEncoding, q_ids, adapter: SACAdapter | None):
    """Returns (cache, logits after prefill, next position)."""
    cache = past_cache(model, enc)
    N = enc.n_context
    q_ids = list(map(int, q_ids))
    if enc.with_lm:
        if adapter is None:
            raise ValueError("an adapter encoding needs the adapter's [LM] row")
        ids = [0] + q_ids                   # id at row 0 is ignored (replaced by [LM])
        positions = np.arange(N, N + len(ids))
        out = model.forward(ids, positions=positions, causal=True, cache=cache,
                            embed_replacements={0: adapter.special_tokens[1]})
    else:
        positions = np.arange(N + 1, N + 1 + len(q_ids))
        out = model.forward(q_ids, positions=positions, causal=True, cache=cache)
    return cache, out["logits"], int(positions[-1]) + 1


def decode_logits(model, enc: SACEncoding, q_ids, adapter: SACAdapter | None, forced_ids=()):
    """Logits after the prefill and after each teacher-forced id (len(forced_ids)+1 vectors)."""
    cache, lg, p = decoder_prefill(model, enc, q_ids, adapter)
    out = [lg]
    for t in forced_ids:
        out.append(model.forward([int(t)], positions=[p], causal=True, cache=cache)["logits"])
        p += 1
    return out


def greedy(model, enc: SACEncoding, q_ids, adapter: SACAdapter | None, max_new: int = 12,
           eos_id: int | None = 2):
    """Greedy answer (stops at eos, exclusive) and the logits of every step (len(ids)+1)."""
    cache, lg, p = decoder_prefill(model, enc, q_ids, adapter)
    logits, new = [lg], []
    while len(new) < max_new:
        t = int(np.argmax(logits[-1]))
        if eos_id is not None and t == eos_id:
            break
        new.append(t)
        logits.append(model.forward([t], positions=[p], causal=True, cache=cache)["logits"])
        p += 1
    return new, logits
