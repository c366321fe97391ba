#!/usr/bin/env python3
"""Ingest benchmark: SAC encode (what `anchorkv ingest` spends its time on) against the plain
prefill and against llama.cpp's prompt processing (llama-bench pp512) on the same CPU.

AnchorKV runs `anchorkv-bench sac --context-tokens N --ratios 5` twice a round: with BF16
prefill products (ANCHORKV_BF16 unset: used where the CPU has AVX512_BF16) and with fp32 sgemm
(ANCHORKV_BF16=0). llama.cpp gets the Q4_1 file and its BF16 and F16 conversions (written once
by llama-quantize into models/, git-ignored), so that it runs in its best format here. Rounds
interleave the engines so that machine noise hits both alike; tokens/s min and median per
engine over all timed repeats.

Needs: a release build (swift build -c release) and llama.cpp (tools/bench/build_llama_cpp.sh).
  python3 tools/bench/ingest_bench.py --rounds 2 --repeats 3 --out docs/bench/ingest.json
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, ".peer", "bin")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def conversion(kind):
    """The model converted to BF16 or F16 by llama-quantize (made once)."""
    out = MODEL.replace(".Q4_1.gguf", f".{kind}.gguf")
    if not os.path.exists(out):
        env = dict(os.environ, LD_LIBRARY_PATH=PEER)
        subprocess.run([os.path.join(PEER, "llama-quantize"), "--allow-requantize", MODEL, out + ".partial", kind],
                       check=True, capture_output=True, env=env)
        os.replace(out + ".partial", out)
    return out


def run_anchorkv(args, bf16):
    env = dict(os.environ)
    env.pop("ANCHORKV_BF16", None)
    if not bf16:
        env["ANCHORKV_BF16"] = "0"
    cmd = [os.path.join(ROOT, ".build", "release", "anchorkv-bench"), "sac", "--model", MODEL, "--context-tokens", str(args.context),
           "--ratios", "5", "--rank", str(args.rank), "--repeats", str(args.repeats), "--threads", str(args.threads), "--json"]
    rows = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout)["rows"]
    tag = "bf16" if bf16 else "fp32"
    out = {}
    for r in rows:
        if r["context_tokens"] != args.context:
            continue
        if r["test"] == "prefill (plain)":
            out[f"AnchorKV plain prefill ({tag})"] = (r["tokens_per_s_best"], r["tokens_per_s_median"])
        if r["test"] == "compress r=5":
            out[f"AnchorKV SAC encode r=5 ({tag})"] = (r["tokens_per_s_best"], r["tokens_per_s_median"])
    return out


def run_llama(args, path, kind):
    env = dict(os.environ, LD_LIBRARY_PATH=PEER)
    cmd = [os.path.join(PEER, "llama-bench"), "-m", path, "-t", str(args.threads), "-r", str(args.repeats),
           "-p", str(args.llama_prompt), "-n", "0", "-o", "json"]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)[0]
    s = r["samples_ts"]
    return {f"llama.cpp pp{args.llama_prompt} ({kind})": (max(s), statistics.median(s))}


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=510, help="SAC context tokens (one window)")
    ap.add_argument("--llama-prompt", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank of the random adapter (the shipped adapters' is 16)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    for tool in ("llama-bench", "llama-quantize"):
        if not os.path.exists(os.path.join(PEER, tool)):
            raise SystemExit(f"missing {tool}: run tools/bench/build_llama_cpp.sh")
    ggufs = [("Q4_1", MODEL), ("BF16", conversion("BF16")), ("F16", conversion("F16"))]
    # Per test: every round's best and median tokens/s.
    results = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for rnd in range(args.rounds):
        for bf16 in (True, False):
            for k, v in run_anchorkv(args, bf16).items():
                results.setdefault(k, []).append(v)
        for kind, path in ggufs:
            for k, v in run_llama(args, path, kind).items():
                results.setdefault(k, []).append(v)
        print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    table = {k: {"best": max(b for b, _ in v), "median": statistics.median(m for _, m in v)} for k, v in results.items()}
    llama_best = max((v["median"], k) for k, v in table.items() if k.startswith("llama.cpp"))
    print(f"Measured {started} on {cpu_name()}, {args.threads} threads, {args.rounds} rounds x {args.repeats} repeats; tokens/s\n")
    print(f"| test | best | median | vs llama.cpp's best median ({llama_best[1]}) |")
    print("|---|---:|---:|---:|")
    for k, v in table.items():
        print(f"| {k} | {v['best']:.0f} | {v['median']:.0f} | {v['median'] / llama_best[0]:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"measured": started, "cpu": cpu_name(), "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
                       "context_tokens": args.context, "lora_rank": args.rank, "llama_prompt": args.llama_prompt, "results": table, "rounds_raw": results,
                       "peer": "llama.cpp from llama-cpp-python 0.3.16 sdist (llama-bench, GGML_NATIVE=ON)"}, f, indent=1)


if __name__ == "__main__":
    main()
