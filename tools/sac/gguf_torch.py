#!/usr/bin/env python3
"""Pure-PyTorch dequantizer for GGUF tensors (any device, no numpy in the math).

    from gguf_torch import load_tensors
    weights = load_tensors("models/SmolLM2-135M-Instruct.Q4_1.gguf", device="cuda")

The raw bytes of each tensor go to `device` as uint8 and are dequantized there, so a GPU machine
never pays for numpy dequantization on the host.  Results are bit-identical to
gguf.quants.dequantize (tools/sac/test_gguf_torch.py checks every tensor of the model): the block
layouts and the order of float32 operations follow gguf/quants.py exactly, e.g. Q4_1 is
(d * q) + m with d, m converted f16 -> f32 first (no fused multiply-add, no reassociation).

Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (the model has F32, Q4_1 and Q8_0).
K-quants and i-quants are not implemented.  gguf is needed only by load_tensors (for offsets).
"""
from __future__ import annotations

import os

import torch

# GGMLQuantizationType values -> (block_size, type_size), as in gguf.constants.GGML_QUANT_SIZES.
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16 = 0, 1, 2, 3, 6, 7, 8, 30
SIZES = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q4_1: (32, 20),
         Q5_0: (32, 22), Q5_1: (32, 24), Q8_0: (32, 34)}
SUPPORTED = tuple(SIZES)


def _f16(b: torch.Tensor) -> torch.Tensor:
    """(..., 2k) uint8 little-endian halves -> float32, bit-identical to numpy's astype.
    torch's conversion is exact for finite values and inf but turns every NaN into 0x7fffffff;
    numpy keeps the sign and payload (sign | 0x7f800000 | mantissa << 13), so patch NaNs."""
    h = b.contiguous().view(torch.int16)
    f = h.view(torch.float16).float()
    h = h.to(torch.int32)  # sign-extended, so the sign mask below needs no overflowing shift
    nan = ((h & 0x7C00) == 0x7C00) & ((h & 0x03FF) != 0)
    bits = (h & -0x80000000) | 0x7F800000 | ((h & 0x03FF) << 13)
    return torch.where(nan, bits.view(torch.float32), f)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, 16) packed bytes -> (n, 32) uint8: the 16 low nibbles are elements 0..15, high 16..31."""
    return torch.stack((qs & 0x0F, qs >> 4), dim=1).reshape(qs.shape[0], 32)


def _high_bits(qh: torch.Tensor) -> torch.Tensor:
    """(n, 4) bytes of a little-endian uint32 -> (n, 32) uint8 with bit i of the word as element i.
    Byte-wise so no uint32 ops are needed (thin support in torch, esp. on CUDA)."""
    shifts = torch.arange(8, dtype=torch.uint8, device=qh.device)
    return ((qh.unsqueeze(-1) >> shifts) & 1).reshape(qh.shape[0], 32)


def _blocks(b: torch.Tensor, qtype: int) -> torch.Tensor:
    """Dequantize (n_blocks, type_size) uint8 -> (n_blocks, 32) float32.
    In-place mul_/add_ round exactly like numpy's separate ops (no FMA) and save the big
    temporaries, which cost more than the arithmetic on CPU."""
    if qtype == Q8_0:
        return b[:, 2:].contiguous().view(torch.int8).float().mul_(_f16(b[:, :2]))
    if qtype == Q4_0:
        return (_nibbles(b[:, 2:]).to(torch.int8) - 8).float().mul_(_f16(b[:, :2]))
    if qtype == Q4_1:   # gguf: (d * q) + m
        return _nibbles(b[:, 4:]).float().mul_(_f16(b[:, :2])).add_(_f16(b[:, 2:4]))
    if qtype == Q5_0:
        q = _nibbles(b[:, 6:]) | (_high_bits(b[:, 2:6]) << 4)
        return (q.to(torch.int8) - 16).float().mul_(_f16(b[:, :2]))
    if qtype == Q5_1:
        q = _nibbles(b[:, 8:]) | (_high_bits(b[:, 4:8]) << 4)
        return q.float().mul_(_f16(b[:, :2])).add_(_f16(b[:, 2:4]))
    raise AssertionError(qtype)


def dequantize(raw: torch.Tensor, qtype: int, shape, device=None) -> torch.Tensor:
    """raw: the tensor's bytes (uint8, any shape, little-endian); qtype: GGMLQuantizationType
    value; shape: the numpy-order element shape (reversed GGUF dims, what
    gguf.quants.dequantize returns).  Returns a float32 tensor of `shape` on `device`
    (default: raw's device)."""
    qtype = int(qtype)
    if qtype not in SIZES:
        raise NotImplementedError(f"GGML type {qtype} is not supported (supported: {SUPPORTED})")
    shape = tuple(int(s) for s in shape)
    block, tsize = SIZES[qtype]
    n = 1
    for s in shape:
        n *= s
    if n % block or (shape and shape[-1] % block):
        raise ValueError(f"shape {shape} does not split into blocks of {block}")
    raw = raw.to(device if device is not None else raw.device).reshape(-1)
    if raw.dtype != torch.uint8 or raw.numel() != n // block * tsize:
        raise ValueError(f"expected {n // block * tsize} uint8 bytes, got {raw.numel()} {raw.dtype}")
    if raw.storage_offset() % 4:  # .view(dtype) needs an aligned start
        raw = raw.clone()
    if qtype == F32:
        out = raw.view(torch.float32).clone()   # own the memory (raw may be a file mapping)
    elif qtype == F16:
        out = _f16(raw)
    elif qtype == BF16:
        # exactly gguf's (int16 -> int32) << 16 bit trick, so NaN payloads survive too
        out = (raw.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
    else:
        out = _blocks(raw.reshape(-1, tsize), qtype)
    return out.reshape(shape)


def load_tensors(path, device="cpu", names=None) -> dict[str, torch.Tensor]:
    """Every tensor of the GGUF file (or those in `names`) as float32 on `device`, keyed by GGUF
    name, each in numpy-order shape.  GGUFReader supplies offsets; bytes come from a torch file
    mapping and are moved to `device` before dequantization."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    if reader.endianess.name != "LITTLE":
        raise NotImplementedError("big-endian GGUF files are not supported")
    size = os.path.getsize(path)
    # shared=False: a private copy-on-write mapping, so the bytes are read lazily and the file
    # is never written.
    blob = torch.from_file(os.fspath(path), shared=False, size=size, dtype=torch.uint8)
    out = {}
    for t in reader.tensors:
        if names is not None and t.name not in names:
            continue
        raw = blob[t.data_offset:t.data_offset + int(t.n_bytes)]
        shape = tuple(reversed([int(d) for d in t.shape]))
        out[t.name] = dequantize(raw.to(device), int(t.tensor_type), shape)
    return out
