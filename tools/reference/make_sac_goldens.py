#!/usr/bin/env python3
"""Generate the SAC golden files in Tests/SACTests/Goldens/ with the float64 reference.

    python3 tools/reference/make_sac_goldens.py [--model PATH] [--check-f32] [--skip-tiny-adapter]

Writes sac-adapter-r5.safetensors, sac-adapter-r15.safetensors (seeded random adapters for
SmolLM2-135M-Instruct), sac-goldens.json, sac-<case>-kv.safetensors, tiny-adapter-r51.safetensors
(tools/sac/convert_checkpoint.py applied to tools/sac/testdata/instruction_adapter_tiny.pt) and
MANIFEST.txt.  Deterministic: re-running reproduces the sha256s in MANIFEST.txt.
--check-f32 additionally reruns every case in float32 and prints the max differences
(nothing is written from the float32 run).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import default_model_path, r6, sha256  # noqa: E402
from llama_ref import gguf_tokenizer, load_gguf, round_to_bf16, write_safetensors  # noqa: E402
import sac_ref  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GOLDENS = os.path.join(ROOT, "Tests", "SACTests", "Goldens")
DEFAULT_MODEL = default_model_path()

TOP_K = 16
SUBSET_STRIDE = 64
MAX_NEW = 12
KV_LAYERS = [0, 1, 15, 29]
LORA_RANK = 8
LORA_SCALE = 2.0
ADAPTER_SEEDS = {5: 5005, 15: 5015}

LIGHTHOUSE = (
    "The Eddystone Lighthouse stands on the dangerous Eddystone Rocks, about 14 kilometres south "
    "of Rame Head in Cornwall, England. The rocks are covered at high tide, and before there was a "
    "light they wrecked many ships on their way into Plymouth Sound. The first lighthouse on the "
    "site was an octagonal wooden tower built by Henry Winstanley and lit in 1698. It was swept "
    "away, together with its builder, in the Great Storm of 1703. A second wooden tower, designed "
    "by John Rudyard, was completed in 1709 and burned down in 1755. The third lighthouse was "
    "built by the civil engineer John Smeaton and finished in 1759. He used dovetailed granite "
    "blocks and a hydraulic lime that set under water. In the 1870s the rock beneath Smeaton's "
    "tower was found to be eroding, so a fourth tower, designed by James Douglass, was built on a nearby part of the reef and first "
    "lit in 1882, and the upper part of Smeaton's tower was rebuilt on Plymouth Hoe."
)

DANUBE = (
    "The Danube is the second-longest river in Europe, after the Volga. It is about 2,850 "
    "kilometres long and drains a basin of roughly 800,000 square kilometres. The river begins in "
    "the Black Forest of southwestern Germany, where two small streams, the Brigach and the Breg, "
    "meet near the town of Donaueschingen. From there it flows generally east and then south-east "
    "for its whole length, until it reaches the Black Sea.\n\n"
    "No other river in the world flows through so many countries. The Danube passes through or "
    "forms part of the border of ten of them: Germany, Austria, Slovakia, Hungary, Croatia, Serbia, "
    "Romania, Bulgaria, Moldova and Ukraine. Four national capitals lie on its banks: Vienna, "
    "Bratislava, Budapest and Belgrade. Distances along the river are traditionally measured in "
    "kilometres from the mouth rather than from the source, so the markers on its banks count "
    "down as a ship travels downstream.\n\n"
    "In Germany the young river passes Ulm, which has the tallest church steeple in the world, and "
    "Regensburg, whose Stone Bridge was completed in the twelfth century and was for centuries the "
    "only solid crossing of the Danube in the region. At Passau, on the Austrian border, it is "
    "joined by the Inn and the Ilz. The Inn is so large that below Passau it carries more water "
    "than the Danube itself. In Austria the river runs through the Wachau, a narrow valley of "
    "vineyards, monasteries and castles between Melk and Krems that was listed as a World Heritage "
    "Site in 2000. It then flows through Vienna, where a flood channel called the New Danube was "
    "dug in the 1970s and 1980s to protect the city from high water.\n\n"
    "Below Bratislava the river forms the border between Slovakia and Hungary. Near Visegrad it "
    "makes a sharp turn to the south known as the Danube Bend, and then it divides Budapest into "
    "Buda on the hilly western bank and Pest on the flat eastern bank. Across the Great Hungarian "
    "Plain it is slow and wide. Its largest tributaries join it in this middle course: the Drava, "
    "the Tisza, which is its longest tributary, and the Sava, which brings it the most water and "
    "enters the Danube at Belgrade.\n\n"
    "Between Serbia and Romania the river cuts through the Carpathian Mountains in the gorge of the "
    "Iron Gates. For centuries its rocks and rapids made the passage dangerous for boats. The Iron "
    "Gate I dam, built jointly by Yugoslavia and Romania and completed in 1972, raised the water "
    "level, drowned the worst rapids and created one of the largest hydroelectric plants in Europe. "
    "Downstream of the gorge the Danube forms most of the border between Romania and Bulgaria, and "
    "then turns north before bending east again towards the sea.\n\n"
    "The river ends in the Danube Delta, most of which lies in Romania and a smaller part in "
    "Ukraine. The delta is divided by three main branches, the Chilia, the Sulina and the Saint "
    "George, and it is one of the largest wetlands in Europe. It is home to more than three hundred "
    "species of birds, including great colonies of pelicans, and it was declared a World Heritage "
    "Site in 1991. The average flow at the mouth is about 6,500 cubic metres per second.\n\n"
    "For a long time the Danube was a frontier. It formed much of the northern border of the Roman "
    "Empire, and the Romans guarded it with a chain of forts and a fleet of river boats. Trajan's "
    "Bridge, built near the Iron Gates early in the second century, was for more than a thousand "
    "years the longest arch bridge ever built. Later the river became a trade route. After the "
    "Crimean War the Treaty of Paris of 1856 created the European Commission of the Danube to keep "
    "the mouth open for shipping, and today the Danube Commission, set up by the Belgrade "
    "Convention of 1948, has its seat in Budapest. Since 1992 the Rhine-Main-Danube Canal has "
    "linked the river to the Rhine, so that barges can travel from the North Sea to the Black Sea.\n\n"
    "The Danube has also inspired music and painting. The most famous example is The Blue Danube, "
    "a waltz by Johann Strauss II that was first performed in Vienna in 1867 and is still played at "
    "the Vienna New Year's Concert every year. Today the river is a busy waterway for cargo ships "
    "and passenger cruises, a source of drinking water and electricity for millions of people, and "
    "a home for many kinds of fish, including sturgeon, whose numbers have fallen sharply."
)

CASES = [
    dict(name="one-window", ratio=5, adapter=5, text=LIGHTHOUSE,
         question="Who built the third Eddystone Lighthouse?"),
    dict(name="three-window", ratio=15, adapter=15, text=None, target_n=1043,
         question="Which canal links the Danube to the Rhine?"),
    dict(name="no-adapter", ratio=5, adapter=None, text=LIGHTHOUSE,
         question="Who built the third Eddystone Lighthouse?"),
]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def trimmed_text(tok, source: str, n_tokens: int) -> str:
    """A prefix of `source` whose standalone tokenization has exactly n_tokens tokens and
    round-trips (decode(ids[:n]) tokenizes back to ids[:n]).  Cut points are tried from the
    exact token boundary; the first round-tripping one is used."""
    ids = sac_ref.tok_ids(tok, source)
    if len(ids) < n_tokens:
        raise SystemExit(f"source text has only {len(ids)} tokens, need {n_tokens}")
    cut = ids[:n_tokens]
    text = tok.decode(cut, skip_special_tokens=False)
    if sac_ref.tok_ids(tok, text) != cut:
        raise SystemExit(f"token-level trim at {n_tokens} does not round-trip: {text[-40:]!r}")
    return text


def make_adapter(model, facts, fingerprint, ratio, seed, path):
    cfg = model.cfg
    H, nl = cfg.hidden_size, cfg.num_layers
    qd, kvd = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    rng = np.random.default_rng(seed)
    mem = sac_ref.WINDOW // ratio
    emb = model.embed
    mean, std = float(emb.mean()), float(emb.std())
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    role = f32(rng.normal(0.0, 0.02, (mem, H)))
    special = f32(rng.normal(mean, std, (2, H)))
    bound = 1.0 / np.sqrt(H)   # kaiming_uniform(a=sqrt 5) on a [rank, H] weight: U(-1/sqrt(H), 1/sqrt(H))
    qA, qB, vA, vB = [], [], [], []
    for _ in range(nl):
        qA.append(f32(rng.uniform(-bound, bound, (H, LORA_RANK))))
        qB.append(f32(rng.normal(0.0, 0.02, (LORA_RANK, qd))))
        vA.append(f32(rng.uniform(-bound, bound, (H, LORA_RANK))))
        vB.append(f32(rng.normal(0.0, 0.02, (LORA_RANK, kvd))))
    meta = sac_ref.adapter_metadata(
        ratio=ratio, lora_rank=LORA_RANK, lora_scale=LORA_SCALE, hidden=H, layers=nl,
        base_model=fingerprint, base_model_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        bos_id=facts["bos_id"], eos_id=facts["eos_id"],
        source=(f"tools/reference/make_sac_goldens.py: random test adapter, numpy default_rng seed {seed}; "
                f"role N(0,0.02), special N(mean {mean:.6g}, std {std:.6g}) of the dequantized embedding, "
                f"lora_A U(+-1/sqrt(hidden)), lora_B N(0,0.02); NOT trained"))
    sac_ref.write_adapter(path, role, special, qA, qB, vA, vB, meta, dtype="BF16")
    back = sac_ref.read_adapter(path)
    assert np.array_equal(back.role_tokens, round_to_bf16(role))
    assert np.array_equal(back.q_B[3], round_to_bf16(qB[3]))
    return back


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def step_entry(lg):
    order = np.argsort(-lg, kind="stable")[:TOP_K]
    return {"top_ids": [int(i) for i in order], "top_values": r6(lg[order]),
            "subset": r6(lg[0::SUBSET_STRIDE]), "margin": r6(lg[order[0]] - lg[order[1]])}


def margin(lg):
    s = np.sort(lg)
    return float(s[-1] - s[-2])


def run_case(model, case, ids, q_ids, adapter, eos_id):
    t0 = time.time()
    enc = sac_ref.encode(model, ids, adapter, case["ratio"])
    t1 = time.time()
    new, logits = sac_ref.greedy(model, enc, q_ids, adapter, max_new=MAX_NEW, eos_id=eos_id)
    t2 = time.time()
    return enc, new, logits, (t1 - t0, t2 - t1)


def f32_check(model32, case, ids, q_ids, adapter, enc64, new64, logits64, eos_id):
    enc = sac_ref.encode(model32, ids, adapter, case["ratio"])
    lg = sac_ref.decode_logits(model32, enc, q_ids, adapter, forced_ids=new64)
    dk = max(float(np.abs(a - b).max()) for a, b in zip(enc.k, enc64.k))
    dv = max(float(np.abs(a - b).max()) for a, b in zip(enc.v, enc64.v))
    dl = max(float(np.abs(a - b).max()) for a, b in zip(lg, logits64))
    agree = all(int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(lg, logits64))
    return dict(max_k=dk, max_v=dv, max_logit=dl, argmax_agree=agree)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--check-f32", action="store_true")
    ap.add_argument("--skip-tiny-adapter", action="store_true")
    args = ap.parse_args()
    os.makedirs(GOLDENS, exist_ok=True)
    T0 = time.time()
    tok = gguf_tokenizer(args.model)
    assert tok.encode("Hello world").ids == [19556, 905]
    model = load_gguf(args.model)
    facts = sac_ref.model_facts(args.model)
    fp = sac_ref.model_fingerprint(args.model, facts)
    bos, eos = facts["bos_id"], facts["eos_id"]
    print(f"loaded {args.model} in {time.time() - T0:.1f}s; fingerprint {fp}; bos {bos} eos {eos}")
    model32 = model.astype(np.float32) if args.check_f32 else None

    adapters = {}
    for r, seed in ADAPTER_SEEDS.items():
        p = os.path.join(GOLDENS, f"sac-adapter-r{r}.safetensors")
        adapters[r] = make_adapter(model, facts, fp, r, seed, p)
        print(f"wrote {p} ({os.path.getsize(p)} bytes)")

    header_ids = sac_ref.tok_ids(tok, sac_ref.CONTEXT_HEADER)
    out = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "base_model_fingerprint": fp,
        "reference": "tools/reference/sac_ref.py on llama_ref.py, float64; K pre-RoPE, HF row order",
        "window": sac_ref.WINDOW, "context_header": sac_ref.CONTEXT_HEADER,
        "question_prefix": sac_ref.QUESTION_PREFIX, "answer_prefix": sac_ref.ANSWER_PREFIX,
        "bos_id": bos, "eos_id": eos, "top_k": TOP_K, "subset_stride": SUBSET_STRIDE,
        "max_new_tokens": MAX_NEW, "kv_layers": KV_LAYERS,
        "notes": ("logits[0] = after the decoder prefill ([LM] row + question segment, or the question "
                  "segment alone when adapter is null); logits[i] = after feeding greedy_ids[i-1]; "
                  "len(logits) = len(greedy_ids)+1; margin = top1-top2; min_margin over the steps that "
                  "chose a token or the stop; subset = logits[0::64]"),
        "cases": [],
    }
    summary = []
    f32_summary = []
    for case in CASES:
        r = case["ratio"]
        if case["text"] is None:
            n_text = case["target_n"] - 1 - len(header_ids)
            text = trimmed_text(tok, DANUBE + "\n\n" + LIGHTHOUSE, n_text)
        else:
            text = case["text"]
        ids = sac_ref.encoder_input_ids(tok, text, bos_id=bos)
        assert ids == [bos] + header_ids + sac_ref.tok_ids(tok, text)
        if "target_n" in case:
            assert len(ids) == case["target_n"], len(ids)
        q_ids = sac_ref.question_ids(tok, case["question"])
        adapter = adapters[case["adapter"]] if case["adapter"] else None
        enc, new, logits, (te, td) = run_case(model, case, ids, q_ids, adapter, eos)
        assert enc.positions == sac_ref.anchor_positions(len(ids), r)
        nl = len(enc.k)
        kv_name = f"sac-{case['name']}-kv.safetensors"
        kvt = {}
        for l in KV_LAYERS:
            kvt[f"layer{l}.k"] = ("F32", enc.k[l].astype(np.float32))
            kvt[f"layer{l}.v"] = ("F32", enc.v[l].astype(np.float32))
        write_safetensors(os.path.join(GOLDENS, kv_name), kvt, metadata={
            "case": case["name"], "layout": "[n_anchors, kv_heads*head_dim], HF row order; k before RoPE",
            "anchor_positions": json.dumps(enc.positions, separators=(",", ":"))})
        margins = [margin(lg) for lg in logits]
        decision = margins[:len(new) + (1 if len(new) < MAX_NEW else 0)]
        stopped = len(new) < MAX_NEW
        out["cases"].append({
            "name": case["name"], "ratio": r,
            "adapter": f"sac-adapter-r{case['adapter']}.safetensors" if case["adapter"] else None,
            "text": text, "question": case["question"],
            "encoder_ids": ids, "n_context": len(ids), "window_lengths": enc.window_lengths,
            "anchor_positions": enc.positions, "n_anchors": len(enc.positions),
            "decoder_has_lm_row": adapter is not None,
            "decoder_start_position": len(ids) if adapter is not None else len(ids) + 1,
            "kv_file": kv_name, "kv_layers": KV_LAYERS,
            "k_norms": r6([np.linalg.norm(enc.k[l]) for l in range(nl)]),
            "v_norms": r6([np.linalg.norm(enc.v[l]) for l in range(nl)]),
            "decoder_ids": q_ids,
            "greedy_ids": new, "greedy_text": tok.decode(new, skip_special_tokens=False),
            "stopped_at_eos": stopped,
            "min_margin": r6(min(decision)), "margins": r6(margins),
            "logits": [step_entry(lg) for lg in logits],
        })
        summary.append((case["name"], len(ids), enc.window_lengths, len(enc.positions), new,
                        tok.decode(new, skip_special_tokens=False), stopped, min(decision),
                        int(np.argmin(decision)), te, td))
        print(f"  [{case['name']}] N={len(ids)} windows={enc.window_lengths} anchors={len(enc.positions)} "
              f"encode {te:.1f}s decode {td:.1f}s greedy={new} {tok.decode(new)!r} "
              f"eos={stopped} min_margin={min(decision):.4f}@{int(np.argmin(decision))}", flush=True)
        if model32 is not None:
            t = time.time()
            d = f32_check(model32, case, ids, q_ids, adapter, enc, new, logits, eos)
            f32_summary.append((case["name"], d))
            print(f"      float32 vs float64: K {d['max_k']:.2e} V {d['max_v']:.2e} "
                  f"logits {d['max_logit']:.2e} argmax agree {d['argmax_agree']} ({time.time() - t:.1f}s)",
                  flush=True)
    p = os.path.join(GOLDENS, "sac-goldens.json")
    with open(p, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {p} ({os.path.getsize(p)} bytes)")

    if not args.skip_tiny_adapter:
        conv = os.path.join(ROOT, "tools", "sac", "convert_checkpoint.py")
        ckpt = os.path.join(ROOT, "tools", "sac", "testdata", "instruction_adapter_tiny.pt")
        tiny = os.path.join(ROOT, "Tests", "LLMTests", "Goldens", "tiny-llama")
        outp = os.path.join(GOLDENS, "tiny-adapter-r51.safetensors")
        subprocess.run([sys.executable, conv, ckpt, "--base-model", tiny, "-o", outp], check=True)
        print(f"wrote {outp} ({os.path.getsize(outp)} bytes)")

    write_manifest()
    print(f"done in {time.time() - T0:.1f}s")


def write_manifest():
    lines = ["# sha256 of every golden file in this folder.",
             "# Generated by: python3 tools/reference/make_sac_goldens.py",
             "#   (sac-*.json / sac-*.safetensors from models/SmolLM2-135M-Instruct.Q4_1.gguf;",
             "#    tiny-adapter-r51.safetensors = tools/sac/convert_checkpoint.py on",
             "#    tools/sac/testdata/instruction_adapter_tiny.pt with --base-model Tests/LLMTests/Goldens/tiny-llama)",
             "# Reference: tools/reference/sac_ref.py + llama_ref.py (float64 numpy); versions in tools/reference/requirements.txt",
             ""]
    for fn in sorted(os.listdir(GOLDENS)):
        if fn in ("MANIFEST.txt", ".keep") or os.path.isdir(os.path.join(GOLDENS, fn)):
            continue
        lines.append(f"{sha256(os.path.join(GOLDENS, fn))}  {fn}")
    with open(os.path.join(GOLDENS, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
