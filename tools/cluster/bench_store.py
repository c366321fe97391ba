#!/usr/bin/env python3
"""The same knowledge base on a RocksDB folder and on a local Redis Cluster (3 masters +
3 replicas on 127.0.0.1), side by side in one run, through the release CLI:
  - ingest of N passages (the ingest's own seconds, tokens/s);
  - queries: the time to read a question's KV (load_s, from `query --json`), and MB/s of KV read;
  - KV fetch: `export` of the whole knowledge base (every window and KV record read and
    checksummed), MB/s.
Each measurement is repeated; min and median are reported. Stop other work first (the
training is paused with SIGSTOP while this runs).

  python3 tools/cluster/bench_store.py --docs 40 --repeats 3 --out docs/bench/cluster-store.json
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from localcluster import Cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(binary, args, env):
    r = subprocess.run([binary, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{args}: {r.stderr[-500:]}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/anchorkv"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data/qa/test.jsonl"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("ANCHORKV_CONFIG", "ANCHORKV_STORE")}
    rows = [json.loads(l) for l in open(args.data)]
    seen, passages, questions = set(), [], []
    for r in rows:
        if r["context"] not in seen and len(passages) < args.docs:
            seen.add(r["context"])
            passages.append({"id": r["id"], "text": r["context"]})
            if len(questions) < args.questions:
                questions.append(r["question"])
    folder = tempfile.mkdtemp(prefix="akv-bench-cluster-")
    cluster = Cluster(folder, 2000)
    results = {"documents": len(passages), "questions": len(questions), "repeats": args.repeats, "runs": []}
    try:
        path = os.path.join(folder, "docs.jsonl")
        with open(path, "w") as f:
            for p in passages:
                f.write(json.dumps(p) + "\n")
        for rep in range(args.repeats):
            stores = {"rocksdb": os.path.join(folder, f"store-{rep}"),
                      "redis-cluster": "redis://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports[:2]) + f"/bench{rep}"}
            for name, store in stores.items():
                ing = run(args.binary, ["ingest", path, "--store", store, "--json"], env)
                tokens = ing["summary"].get("tokens") or sum(d.get("tokens", 0) for d in ing["documents"])
                loads, mbs = [], []
                for q in questions:
                    a = run(args.binary, ["query", q, "--store", store, "--max-tokens", "4", "--json"], env)
                    kv = a["anchors"] * 30 * 2 * 192 * 2  # fp16 K and V of every layer, SmolLM2-135M
                    load = a["timings"]["load_s"]
                    loads.append(load)
                    mbs.append(kv / 1e6 / load if load > 0 else 0)
                snap = os.path.join(folder, f"{name}-{rep}.akvs")
                ex = run(args.binary, ["export", "-o", snap, "--store", store, "--json"], env)
                os.remove(snap)
                row = {"store": name, "repeat": rep, "ingest_s": ing["seconds"], "ingest_tokens_per_s": tokens / ing["seconds"],
                       "query_load_s_median": statistics.median(loads), "query_kv_mb_per_s_median": statistics.median(mbs),
                       "export_mb_per_s": ex["mb_per_s"], "export_bytes": ex["bytes"]}
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    summary = {}
    for name in ("rocksdb", "redis-cluster"):
        rs = [r for r in results["runs"] if r["store"] == name]
        summary[name] = {k: {"min": min(r[k] for r in rs), "median": statistics.median(r[k] for r in rs)}
                         for k in ("ingest_tokens_per_s", "query_load_s_median", "query_kv_mb_per_s_median", "export_mb_per_s")}
    results["summary"] = summary
    results["cpu"] = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
