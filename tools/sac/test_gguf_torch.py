#!/usr/bin/env python3
"""Tests for tools/sac/gguf_torch.py (needs torch and gguf; skipped without them).

    python3 tools/sac/test_gguf_torch.py

Checks gguf_torch.dequantize bit for bit (uint32 views, so NaN payloads and -0.0 count) against
gguf.quants.dequantize on synthetic blocks of every supported type, then on every tensor of
models/SmolLM2-135M-Instruct.Q4_1.gguf, on CPU and, when present, CUDA.  CI has only numpy, so
without torch or gguf the whole file prints SKIP and exits 0; without the model only the model
tests skip (a failure under ANCHORKV_REQUIRE_MODEL=1, as in the Swift tests).  Ends with
'N passed, N failed'; exit 1 on any failure.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def skip_all(why):
    print(f"SKIP {os.path.basename(__file__)}: {why}")
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(why, allow_module_level=True)
    sys.exit(0)


try:
    import numpy as np
    import torch
    import gguf
    from gguf import GGMLQuantizationType as T, GGUFReader
except ImportError as e:
    skip_all(f"needs torch, gguf and numpy ({e}); install them, e.g. the repo's .venv")

sys.path.insert(0, HERE)
import gguf_torch  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
results = []


def test(fn):
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"PASS {fn.__name__}")
    except Exception:  # noqa: BLE001
        results.append((fn.__name__, traceback.format_exc()))
        print(f"FAIL {fn.__name__}\n{traceback.format_exc()}")
    return fn


test.__test__ = False  # a decorator, not a test, for pytest


def model_test(fn):
    if os.path.exists(MODEL):
        return test(fn)
    if os.environ.get("ANCHORKV_REQUIRE_MODEL") == "1":
        results.append((fn.__name__, f"model missing: {MODEL}"))
        print(f"FAIL {fn.__name__}: model missing ({MODEL}; run tools/setup.sh)")
    else:
        print(f"SKIP {fn.__name__}: model missing ({MODEL}; run tools/setup.sh)")
    return fn


model_test.__test__ = False


def assert_bits_equal(got, ref, what):
    """got: torch float32; ref: numpy float32.  Equal shape and identical bit patterns."""
    assert got.dtype == torch.float32, (what, got.dtype)
    assert tuple(got.shape) == ref.shape, (what, tuple(got.shape), ref.shape)
    g = got.cpu().contiguous().view(torch.int32)
    r = torch.from_numpy(np.array(ref, dtype=np.float32).view(np.int32))  # copy: ref may be read-only
    if not torch.equal(g, r):
        bad = (g != r).nonzero()[0].tolist()
        raise AssertionError(f"{what}: {(g != r).sum().item()} values differ, first at {bad}: "
                             f"{got.cpu()[tuple(bad)].item()!r} vs {ref[tuple(bad)]!r}")


RNG = np.random.default_rng(1234)


def f16_scales(n):
    """Finite f16 scales over the whole range: signed, subnormal, zero, -0, max."""
    s = RNG.standard_normal(n) * 10.0 ** RNG.uniform(-7, 4, n)
    s = np.clip(s, -65504, 65504).astype(np.float16)
    special = [0.0, -0.0, 6e-8, -6e-8, 65504, 6.1e-5]
    s[:len(special)] = special[:n]
    return s.view(np.uint8).reshape(n, 2)


def synthetic(qtype, shape):
    """Random raw bytes for `shape` (numpy element order) with finite f16 scales."""
    block, tsize = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape)) // block
    if qtype in (T.F32, T.F16, T.BF16):  # every bit pattern: NaN, inf, subnormals
        return RNG.integers(0, 256, n * tsize, dtype=np.uint8)
    b = RNG.integers(0, 256, (n, tsize), dtype=np.uint8)
    b[:, 0:2] = f16_scales(n)                      # d
    if qtype in (T.Q4_1, T.Q5_1):
        b[:, 2:4] = f16_scales(n)                  # m
    return b.reshape(-1)


def check_synthetic(qtype):
    for shape in [(32,), (7, 64), (3, 5, 1024)]:
        raw = synthetic(qtype, shape)
        byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
        ref = gguf.quants.dequantize(raw.reshape(byte_shape), qtype)
        for dev in DEVICES:
            got = gguf_torch.dequantize(torch.from_numpy(raw), int(qtype), shape, device=dev)
            assert got.device.type == dev
            assert_bits_equal(got, ref, f"{qtype.name} {shape} on {dev}")


for _q in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
    def _fn(q=_q):
        check_synthetic(q)
    _fn.__name__ = f"test_synthetic_{_q.name.lower()}"
    globals()[_fn.__name__] = test(_fn)  # visible to pytest too


@test
def test_errors():
    raw = torch.zeros(18, dtype=torch.uint8)
    for bad in [lambda: gguf_torch.dequantize(raw, int(T.Q4_K), (256,)),      # K-quants: no
                lambda: gguf_torch.dequantize(raw, int(T.Q4_0), (64,)),       # too few bytes
                lambda: gguf_torch.dequantize(raw, int(T.Q4_0), (2, 16))]:    # row not whole blocks
        try:
            bad()
        except (NotImplementedError, ValueError):
            continue
        raise AssertionError("expected an error")


@test
def test_unaligned_raw():
    # A slice that starts off a 4-byte boundary still views as float32 correctly.
    raw = RNG.integers(0, 256, 4 * 10 + 1, dtype=np.uint8)
    got = gguf_torch.dequantize(torch.from_numpy(raw)[1:], int(T.F32), (10,))
    assert_bits_equal(got, raw[1:].copy().view(np.float32), "unaligned F32")


@test
def test_no_numpy_in_math():
    src = open(os.path.join(HERE, "gguf_torch.py")).read()
    assert "import numpy" not in src and "from numpy" not in src


@model_test
def test_model_all_tensors():
    # Both timings are end to end: GGUFReader (about 2 s of this, parsing metadata) + dequantize.
    t0 = time.perf_counter()
    reader = GGUFReader(MODEL)
    ref = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    t_np = time.perf_counter() - t0
    types = sorted({t.tensor_type.name for t in reader.tensors})
    print(f"  model: {len(reader.tensors)} tensors, types {types}")
    for dev in DEVICES:
        if dev == "cuda":
            gguf_torch.load_tensors(MODEL, device=dev, names={"output_norm.weight"})  # warm-up
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = gguf_torch.load_tensors(MODEL, device=dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        t_torch = time.perf_counter() - t0
        print(f"  timing: GGUFReader + gguf.quants.dequantize {t_np:.2f}s, "
              f"gguf_torch.load_tensors({dev!r}) {t_torch:.2f}s")
        assert list(got) == [t.name for t in reader.tensors]
        for name, arr in ref.items():
            assert got[name].device.type == dev
            assert_bits_equal(got[name], arr, f"{name} on {dev}")
        del got


def main():
    failed = [n for n, e in results if e]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
