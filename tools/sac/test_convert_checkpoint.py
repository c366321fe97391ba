#!/usr/bin/env python3
"""Tests for tools/sac/convert_checkpoint.py (numpy only; no torch, no network).

    python3 tools/sac/test_convert_checkpoint.py

Converts tools/sac/testdata/instruction_adapter_tiny.pt (written once by
make_synthetic_checkpoint.py with real torch) against Tests/LLMTests/Goldens/tiny-llama and
checks every tensor bit for bit against instruction_adapter_tiny.expected.npz, the names,
shapes, dtypes and metadata, and the error cases.  Ends with 'N passed, N failed'; exit 1 on
any failure.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CONVERT = os.path.join(HERE, "convert_checkpoint.py")
CKPT = os.path.join(HERE, "testdata", "instruction_adapter_tiny.pt")
EXPECTED = os.path.join(HERE, "testdata", "instruction_adapter_tiny.expected.npz")
TINY = os.path.join(ROOT, "Tests", "LLMTests", "Goldens", "tiny-llama")
TINY_FINGERPRINT = "11dc24b067eb1b71de2490de6c6b45be"
GOLDEN_ADAPTER = os.path.join(ROOT, "Tests", "SACTests", "Goldens", "tiny-adapter-r51.safetensors")

sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import sac_ref  # noqa: E402

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


def run(*args):
    p = subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def raw_tensor(path, name):
    h, base = header(path)
    a, b = h[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + a)
        return f.read(b - a), h[name]


TMP = tempfile.mkdtemp(prefix="sac-convert-test-")
OUT = os.path.join(TMP, "tiny-adapter.safetensors")


def ckpt_key_to_adapter(k):
    if k in ("role_tokens", "special_tokens"):
        return k
    return k.replace("model.model.layers.", "layers.").replace(".self_attn.", ".")


@test
def test_convert_runs():
    rc, out, err = run(CKPT, "--base-model", TINY, "-o", OUT)
    assert rc == 0, (rc, out, err)
    assert os.path.exists(OUT)


@test
def test_tensors_bit_exact():
    exp = np.load(EXPECTED)
    h, _ = header(OUT)
    names = sorted(k for k in h if k != "__metadata__")
    assert names == sorted(ckpt_key_to_adapter(k) for k in exp.files), names
    for k in exp.files:
        raw, info = raw_tensor(OUT, ckpt_key_to_adapter(k))
        assert info["dtype"] == "BF16", (k, info)
        e = exp[k]
        assert list(e.shape) == info["shape"], (k, e.shape, info["shape"])
        bits = np.frombuffer(raw, dtype="<u2").reshape(e.shape)
        got = (bits.astype(np.uint32) << 16).view(np.float32)
        assert np.array_equal(got.view(np.uint32), e.astype(np.float32).view(np.uint32)), k


@test
def test_shapes():
    h, _ = header(OUT)
    want = {"role_tokens": [10, 64], "special_tokens": [2, 64]}
    for i in range(2):
        want.update({f"layers.{i}.q_proj.lora_A": [64, 4], f"layers.{i}.q_proj.lora_B": [4, 64],
                     f"layers.{i}.v_proj.lora_A": [64, 4], f"layers.{i}.v_proj.lora_B": [4, 32]})
    assert {k: v["shape"] for k, v in h.items() if k != "__metadata__"} == want


@test
def test_metadata():
    h, _ = header(OUT)
    m = h["__metadata__"]
    assert all(isinstance(v, str) for v in m.values()), m
    expect = {"format": "anchorkv.sac-adapter", "format_version": "1", "ratio": "51", "window": "510",
              "mem_size": "10", "lora_rank": "4", "lora_scale": "2.0", "hidden_size": "64",
              "num_layers": "2", "base_model": TINY_FINGERPRINT, "bos_id": "298", "eos_id": "299",
              "context_header": "### Context:\n", "question_prefix": "\n### Question:\n",
              "answer_prefix": "\n### Answer:\n", "anchor_selection": "uniform"}
    for k, v in expect.items():
        assert m.get(k) == v, (k, m.get(k), v)
    assert m.get("base_model_name") and m.get("source"), m
    assert sac_ref.model_fingerprint(TINY) == TINY_FINGERPRINT


@test
def test_reader_roundtrip():
    ad = sac_ref.read_adapter(OUT)
    exp = np.load(EXPECTED)
    assert ad.ratio == 51 and ad.lora_scale == 2.0
    assert np.array_equal(ad.q_A[1], exp["model.model.layers.1.self_attn.q_proj.lora_A"])  # non-contiguous in ckpt
    assert np.array_equal(ad.special_tokens, exp["special_tokens"])


@test
def test_golden_copy_matches():
    if not os.path.exists(GOLDEN_ADAPTER):
        raise AssertionError(f"missing {GOLDEN_ADAPTER} (run tools/reference/make_sac_goldens.py)")
    with open(GOLDEN_ADAPTER, "rb") as f, open(OUT, "rb") as g:
        assert f.read() == g.read(), "Tests/SACTests/Goldens/tiny-adapter-r51.safetensors differs from a fresh conversion"


@test
def test_explicit_ratio_ok_and_mismatch():
    rc, _, err = run(CKPT, "--base-model", TINY, "--ratio", "51", "-o", os.path.join(TMP, "r51.safetensors"))
    assert rc == 0, err
    rc, _, err = run(CKPT, "--base-model", TINY, "--ratio", "15", "-o", os.path.join(TMP, "r15.safetensors"))
    assert rc == 1 and "mem_size 10" in err and err.count("\n") == 1, (rc, err)
    assert not os.path.exists(os.path.join(TMP, "r15.safetensors"))


@test
def test_lora_scale_recorded():
    p = os.path.join(TMP, "s.safetensors")
    rc, _, err = run(CKPT, "--base-model", TINY, "--lora-scale", "1.5", "-o", p)
    assert rc == 0, err
    assert header(p)[0]["__metadata__"]["lora_scale"] == "1.5"


@test
def test_truncated_file():
    data = open(CKPT, "rb").read()
    for n in (len(data) // 2, len(data) - 30, 100):
        bad = os.path.join(TMP, f"trunc{n}.pt")
        with open(bad, "wb") as f:
            f.write(data[:n])
        rc, out, err = run(bad, "--base-model", TINY, "-o", os.path.join(TMP, "x.safetensors"))
        assert rc == 1, (n, rc, out, err)
        assert err.startswith("convert_checkpoint: error:") and err.count("\n") == 1, (n, err)
        assert "Traceback" not in err


@test
def test_not_a_zip():
    bad = os.path.join(TMP, "plain.pt")
    with open(bad, "wb") as f:
        f.write(b"\x80\x02}q\x00.")   # a bare pickle (legacy torch format), not a zip
    rc, _, err = run(bad, "--base-model", TINY, "-o", os.path.join(TMP, "x.safetensors"))
    assert rc == 1 and "not a torch.save zip" in err and err.count("\n") == 1, err


def rewrite_ckpt(dst, edit):
    """Copy the checkpoint zip, passing data.pkl through edit(bytes) -> bytes."""
    with zipfile.ZipFile(CKPT) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            b = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                b = edit(b)
            zout.writestr(info, b)


@test
def test_missing_key():
    bad = os.path.join(TMP, "missing.pt")
    # rename one key inside the pickle (same length, so the pickle stays valid)
    old = b"model.model.layers.1.self_attn.v_proj.lora_B"
    new = b"model.model.layers.1.self_attn.v_proj.lora_X"
    rewrite_ckpt(bad, lambda b: b.replace(old, new))
    rc, _, err = run(bad, "--base-model", TINY, "-o", os.path.join(TMP, "x.safetensors"))
    assert rc == 1 and "missing key" in err and "layers.1.self_attn.v_proj.lora_B" in err, err
    assert err.count("\n") == 1, err


@test
def test_wrong_base_model_shape():
    other = os.path.join(TMP, "tiny-wide")
    shutil.copytree(TINY, other)
    cfg = json.load(open(os.path.join(other, "config.json")))
    cfg["num_attention_heads"] = 8            # q dim 8*16 = 128 != lora_B's 64
    json.dump(cfg, open(os.path.join(other, "config.json"), "w"))
    rc, _, err = run(CKPT, "--base-model", other, "-o", os.path.join(TMP, "x.safetensors"))
    assert rc == 1 and "q_proj.lora_B" in err and "shape" in err and err.count("\n") == 1, err
    cfg["num_attention_heads"] = 4
    cfg["num_hidden_layers"] = 3              # layer 2 keys missing
    json.dump(cfg, open(os.path.join(other, "config.json"), "w"))
    rc, _, err = run(CKPT, "--base-model", other, "-o", os.path.join(TMP, "x.safetensors"))
    assert rc == 1 and "missing key" in err and "layers.2." in err, err


@test
def test_missing_base_model():
    rc, _, err = run(CKPT, "--base-model", os.path.join(TMP, "nope"), "-o", os.path.join(TMP, "x.safetensors"))
    assert rc == 1 and err.startswith("convert_checkpoint: error:") and err.count("\n") == 1, err


@test
def test_no_torch_import():
    src = open(CONVERT).read()
    assert "import torch" not in src and "from torch" not in src
    code = (f"import sys; sys.argv=['c', {CKPT!r}, '--base-model', {TINY!r}, '-o', {os.path.join(TMP, 'nt.safetensors')!r}];"
            f"sys.path.insert(0, {HERE!r}); import convert_checkpoint as c; rc=c.main(sys.argv[1:]);"
            f"assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    failed = [n for n, e in results if e]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
