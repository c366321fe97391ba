#!/usr/bin/env python3
"""Engine benchmark: AnchorKV vs llama.cpp (llama-bench) on the same GGUF file and thread count.

Both engines run in the same session, interleaved round by round (A B, then B A, ...), so
machine noise hits both alike. Each round runs every test (pp512, pp2048, tg64) with one
warm-up and --repeats timed runs. Reports min and median tokens/s per engine and their ratios,
writes docs/bench/engine.json and the engine section of docs/benchmarks.md.

  python3 tools/bench/engine_bench.py [--threads 2] [--rounds 2] [--repeats 3]
Needs: a release build (swift build -c release) and llama-bench (tools/bench/build_llama_cpp.sh).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PEER = os.path.join(ROOT, ".peer", "bin")


def run_anchorkv(args, prompts, gen):
    cmd = [os.path.join(ROOT, ".build", "release", "anchorkv-bench"), "decode", "--model", args.model,
           "--prompt-tokens", *map(str, prompts), "--gen-tokens", str(gen), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {r["test"]: r["all"] for r in json.loads(out)["results"]}


def run_llama(args, prompts, gen):
    env = dict(os.environ, LD_LIBRARY_PATH=PEER)
    cmd = [os.path.join(PEER, "llama-bench"), "-m", args.model, "-t", str(args.threads), "-r", str(args.repeats),
           "-p", ",".join(map(str, prompts)), "-n", str(gen), "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    res = {}
    for r in json.loads(out):
        name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        res[name] = r["samples_ts"]
    return res


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", default="512,2048")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--no-docs", action="store_true", help="print only; do not touch docs/")
    args = ap.parse_args()
    prompts = [int(p) for p in args.prompts.split(",")]
    samples = {"anchorkv": {}, "llama.cpp": {}}
    runners = [("anchorkv", run_anchorkv), ("llama.cpp", run_llama)]
    for rnd in range(args.rounds):
        order = runners if rnd % 2 == 0 else runners[::-1]
        for name, fn in order:
            print(f"[bench] round {rnd + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            for test, vals in fn(args, prompts, args.gen).items():
                samples[name].setdefault(test, []).extend(vals)
    tests = [f"pp{p}" for p in prompts] + [f"tg{args.gen}"]
    rows = []
    for t in tests:
        a, l = samples["anchorkv"].get(t, []), samples["llama.cpp"].get(t, [])
        row = {"test": t,
               "anchorkv_min": min(a), "anchorkv_median": statistics.median(a),
               "llamacpp_min": min(l), "llamacpp_median": statistics.median(l)}
        row["ratio_median"] = row["anchorkv_median"] / row["llamacpp_median"]
        row["ratio_min"] = row["anchorkv_min"] / row["llamacpp_min"]
        rows.append(row)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads, "rounds": args.rounds,
            "repeats_per_round": args.repeats, "model": os.path.relpath(args.model, ROOT),
            "peer": "llama.cpp from llama-cpp-python 0.3.16 sdist (llama-bench, GGML_NATIVE=ON)"}
    table = ["| test | AnchorKV min | AnchorKV median | llama.cpp min | llama.cpp median | ratio (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['test']} | {r['anchorkv_min']:.1f} | {r['anchorkv_median']:.1f} | {r['llamacpp_min']:.1f} | "
                     f"{r['llamacpp_median']:.1f} | {r['ratio_median']:.2f}x |")
    print("\n".join(table))
    if args.no_docs:
        return
    os.makedirs(os.path.join(ROOT, "docs", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "bench", "engine.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "samples": samples}, f, indent=1)
    section = [
        "<!-- engine-bench:begin (written by tools/bench/engine_bench.py) -->",
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), {args.threads} threads, "
        f"{meta['model']}; {args.rounds} interleaved rounds x {args.repeats} repeats per engine; tokens/s.",
        "", *table, "",
        "<!-- engine-bench:end -->",
    ]
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n## Engine: prefill and decode vs llama.cpp\n\n<!-- engine-bench:begin -->\n<!-- engine-bench:end -->\n"
    begin, end = text.find("<!-- engine-bench:begin"), text.find("<!-- engine-bench:end -->")
    if begin < 0 or end < 0:
        text += "\n## Engine: prefill and decode vs llama.cpp\n\n<!-- engine-bench:begin -->\n<!-- engine-bench:end -->\n"
        begin, end = text.find("<!-- engine-bench:begin"), text.find("<!-- engine-bench:end -->")
    text = text[:begin] + "\n".join(section) + text[end + len("<!-- engine-bench:end -->"):]
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote docs/benchmarks.md and docs/bench/engine.json", file=sys.stderr)


if __name__ == "__main__":
    main()
