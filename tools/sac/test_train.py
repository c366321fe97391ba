#!/usr/bin/env python3
"""Tests for tools/sac/train.py (needs torch, gguf, tokenizers and the default model; skipped
with a message where torch is missing, as on CI, which has numpy only).

    .venv/bin/python tools/sac/test_train.py

- the batched encoder (windows as rows of one batch, the last one padded) equals the float64
  numpy reference tools/reference/sac_ref.py on a three-window context, and so does the decoder;
- a full-context Context (prefill of ctx[:-1], the last token leading the decoder batch) equals
  one causal forward, for padded rows too; greedy with a KV cache equals greedy by recomputation;
- a run stopped after one step and resumed ends bit for bit where an uninterrupted run ends
  (trainables and optimizer state), for SAC with a teacher and for Full-FT.
Ends with 'N passed, N failed'; exit 1 on any failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.environ.get("ANCHORKV_SMOLLM2_GGUF", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))

try:
    import numpy as np
    import torch
    import gguf  # noqa: F401
    import tokenizers  # noqa: F401
except ImportError as e:
    print(f"SKIP test_train.py: needs torch, gguf, tokenizers and numpy ({e}); install them, e.g. the repo's .venv")
    sys.exit(0)
if not os.path.exists(MODEL):
    if os.environ.get("ANCHORKV_REQUIRE_MODEL") == "1":
        print(f"FAIL test_train.py: model missing at {MODEL} (run tools/setup.sh)")
        sys.exit(1)
    print(f"SKIP test_train.py: model missing at {MODEL} (run tools/setup.sh)")
    sys.exit(0)

sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import train as T  # noqa: E402
from llama_ref import load_gguf, read_safetensors  # noqa: E402
import sac_ref  # noqa: E402
from make_sac_goldens import LIGHTHOUSE  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))
results = []


def test(fn):
    try:
        fn()
        results.append(True)
        print(f"PASS {fn.__name__}")
    except Exception:
        results.append(False)
        print(f"FAIL {fn.__name__}")
        traceback.print_exc()


_cache = {}


def model64():
    if "base" not in _cache:
        _cache["base"] = T.Base(MODEL, "cpu", dtype=torch.float64)
        _cache["lay"] = T.Layout(T.gguf_tokenizer(MODEL))
        _cache["ref"] = load_gguf(MODEL)
    return _cache["base"], _cache["lay"], _cache["ref"]


def seeded_adapter(base, ratio, path):
    """A random rank-4 adapter with every trained part non-zero, exported and read back so the
    torch and numpy sides compute with the same stored values."""
    tr = T.Trainable(base, 4, 2.0, ratio, 7)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for B in tr.qB + tr.vB:
            B.copy_(torch.randn(*B.shape, generator=g, dtype=torch.float64) * 0.02)
        tr.role.mul_(3)
    T.export(path, base, tr, types.SimpleNamespace(full_ft=False, bos_id=1, eos_id=2),
             T.model_facts(MODEL), T.model_fingerprint(MODEL), "test_train.py", dtype="F32")
    st = read_safetensors(path)
    nl = base.nl
    names = ([f"layers.{i}.q_proj.lora_A" for i in range(nl)] + [f"layers.{i}.q_proj.lora_B" for i in range(nl)]
             + [f"layers.{i}.v_proj.lora_A" for i in range(nl)] + [f"layers.{i}.v_proj.lora_B" for i in range(nl)]
             + ["role_tokens", "special_tokens"])
    tr.load([torch.from_numpy(st[n].astype(np.float64)) for n in names])
    return tr


def test_batched_encoder_matches_reference():
    base, lay, ref = model64()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a.safetensors")
        tr = seeded_adapter(base, 15, path)
        ids = lay.context_ids((LIGHTHOUSE + " ") * 5, 1100)  # windows 510 + 510 + 80
        assert len(ids) == 1100
        with torch.no_grad():
            caps, apos = T.sac_encode(base, tr, ids)
            qs = lay.question_seg("Who built the third lighthouse?")
            h = T.sac_decode_hidden(base, tr, caps, apos, len(ids), qs)
            lg = base.logits(h[-1]).numpy()
        ad = sac_ref.read_adapter(path)
        enc = sac_ref.encode(ref, ids, ad)
        assert enc.positions == [int(p) for p in apos], "anchor positions differ"
        dk = max(float(np.abs(enc.k[l] - caps[l][0].numpy()).max()) for l in range(base.nl))
        dv = max(float(np.abs(enc.v[l] - caps[l][1].numpy()).max()) for l in range(base.nl))
        dl = float(np.abs(np.asarray(sac_ref.decode_logits(ref, enc, qs, ad, forced_ids=[])[0]) - lg).max())
        print(f"  3 windows, {len(apos)} anchors: K {dk:.1e} V {dv:.1e} logits {dl:.1e} (float64)")
        assert dk < 1e-9 and dv < 1e-9 and dl < 1e-8


def test_full_context_rows_and_greedy():
    base, lay, _ = model64()
    ids = lay.context_ids(LIGHTHOUSE, 300)
    qs = lay.question_seg("Who built it?")
    with torch.no_grad():
        ctx = T.full_context(base, None, ids)
        hq = T.decode_rows(base, ctx, [qs, qs[:3]])
        x = base.embed[torch.tensor(ids + qs)][None]
        n = x.shape[1]
        hf, _, _ = base.forward(x, torch.arange(1, n + 1)[None], torch.ones(n, n, dtype=torch.bool).tril())
        d_full = float((hq[0] - hf[0, len(ids) - 1:]).abs().max())
        d_pad = float((hq[1, :4] - hf[0, len(ids) - 1: len(ids) + 3]).abs().max())
        assert d_full < 1e-10 and d_pad < 1e-10, (d_full, d_pad)
        out = T.greedy(base, ctx, qs, lay.eos, 6)
        seq, want = list(qs), []
        for _ in range(6):
            nxt = int(base.logits(T.decode_rows(base, ctx, [seq])[0, -1]).argmax())
            if nxt == lay.eos:
                break
            want.append(nxt)
            seq.append(nxt)
        assert out == want, (out, want)


def tiny_data(d):
    qa = os.path.join(d, "qa.jsonl")
    lm = os.path.join(d, "lm.jsonl")
    rows = []
    for i in range(6):
        ctx = f"Passage {i}. " + LIGHTHOUSE[: 400 + 150 * i]
        for j, (q, a) in enumerate([("Who built the third lighthouse?", "John Smeaton"), ("What year?", "1759")][: 1 + i % 2]):
            rows.append({"id": f"t{i}-{j}", "task": "quoref" if i % 2 else "drop", "context": ctx, "question": q,
                         "answers": [a]})
    with open(qa, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(lm, "w") as f:
        f.writelines(json.dumps({"text": LIGHTHOUSE * 2}) + "\n" for _ in range(3))
    return qa, lm


def run_train(args):
    r = subprocess.run([sys.executable, os.path.join(HERE, "train.py")] + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def resume_is_exact(extra):
    with tempfile.TemporaryDirectory() as d:
        qa, lm = tiny_data(d)
        common = ["--qa", qa, "--lm", lm, "--dev-questions-per-task", "1", "--dev-every", "0",
                  "--dev-f1-questions", "1", "--dev-max-new-tokens", "2", "--passages-per-step", "2",
                  "--lm-docs-per-step", "1", "--stage1-max-tokens", "200", "--threads", "1"] + extra
        run_train(common + ["--out", os.path.join(d, "a")])
        run_train(common + ["--out", os.path.join(d, "b"), "--max-steps", "1"])
        out = run_train(common + ["--out", os.path.join(d, "b"), "--resume"])
        assert "resumed" in out, out
        a = torch.load(os.path.join(d, "a", "ckpt.pt"), weights_only=False)
        b = torch.load(os.path.join(d, "b", "ckpt.pt"), weights_only=False)
        assert a["state"]["done"] and b["state"]["done"]
        for k in ("step", "stage", "examples", "cursor", "epoch", "passages"):
            assert a["state"][k] == b["state"][k], (k, a["state"][k], b["state"][k])
        for x, y in zip(a["params"], b["params"]):
            assert torch.equal(x, y), "trainables differ after resume"
        for sa, sb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
            assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
        la = open(os.path.join(d, "a", "loss.csv")).read().splitlines()
        lb = open(os.path.join(d, "b", "loss.csv")).read().splitlines()
        assert [l.split(",")[:10] for l in la] == [l.split(",")[:10] for l in lb], "loss logs differ"
        return d


def test_resume_exact_sac_with_teacher():
    with tempfile.TemporaryDirectory() as d:
        qa, lm = tiny_data(d)
        teacher = os.path.join(d, "teacher.safetensors")
        run_train(["--full-ft", "--qa", qa, "--dev-questions-per-task", "1", "--dev-every", "0", "--dev-f1-questions", "1",
                   "--stage2-steps", "1", "--threads", "1", "--out", os.path.join(d, "t"), "--export", teacher])
        resume_is_exact(["--ratio", "5", "--stage1-steps", "1", "--stage2-steps", "2", "--teacher", teacher,
                         "--teacher-cache", os.path.join(d, "cache")])


def test_resume_exact_full_ft():
    resume_is_exact(["--full-ft", "--stage2-steps", "2"])


for t in (test_batched_encoder_matches_reference, test_full_context_rows_and_greedy,
          test_resume_exact_sac_with_teacher, test_resume_exact_full_ft):
    test(t)
passed = sum(results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
