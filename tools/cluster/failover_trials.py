#!/usr/bin/env python3
"""Failover trials: kill -9 of a Redis Cluster master in the middle of an AnchorKV ingest.

Each trial starts a fresh 3-master, 3-replica cluster on 127.0.0.1 (Debian's redis-server and
redis-cli), runs `anchorkv ingest --json` of N small documents into it, kills a random master
with SIGKILL once a few documents are in, lets the ingest run to its end through the failover,
and then checks, with the CLI only:
  - every document the ingest acknowledged (status added) is listed by `docs list` (none lost);
  - `export` of the whole knowledge base succeeds: it reads every visible document's windows
    and KV records and verifies each checksum, so no visible document is half there;
  - the export holds exactly the listed documents.
Then `sweep --older-than 0s` removes what the crash left and the export is checked again.
With --kill-writer the ingest process itself is killed (SIGKILL, at a random moment within a
document) instead of a master: the documents it reported done before the kill must be visible,
and the sweep has real leftovers (a version staged and never committed) to remove.
Writes one JSON summary (--out) and prints a table row per trial.

  python3 tools/cluster/failover_trials.py --trials 10 --docs 40 --out docs/bench/failover-trials.json
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from localcluster import Cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ("river lighthouse harbour storm keeper granite tide lamp engineer tower bridge canal "
         "mill forge market cathedral orchard meadow glacier valley").split()


def documents(n, seed):
    rng = random.Random(seed)
    return [{"id": f"doc-{i:03d}", "title": f"Document {i}",
             "text": f"Document {i}. " + " ".join(rng.choice(WORDS) for _ in range(90)) + "."} for i in range(n)]


def trial(i, args, binary, env):
    folder = tempfile.mkdtemp(prefix=f"akv-trial-{i}-")
    cluster = Cluster(folder, args.node_timeout)
    try:
        url = "redis://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports[:2]) + f"/trial{i}"
        path = os.path.join(folder, "docs.jsonl")
        with open(path, "w") as f:
            for d in documents(args.docs, i):
                f.write(json.dumps(d) + "\n")
        t0 = time.time()
        ingest = subprocess.Popen([binary, "ingest", path, "--store", url, "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        # Kill a master once the ingest is under way (progress lines on stderr count documents).
        done_before_kill, killed_at, victim = 0, None, None
        lines = []
        for line in ingest.stderr:
            lines.append(line)
            m = re.search(r"\] (\d+)/(\d+) docs", line)
            if m:
                done_before_kill = int(m.group(1))
            if killed_at is None and done_before_kill >= args.kill_after:
                rng = random.Random(1000 + i)
                if args.kill_writer:
                    time.sleep(rng.uniform(0, 1.5))
                    victim = "writer"
                    ingest.kill()
                else:
                    victim = rng.choice(cluster.masters())
                    cluster.kill(victim)
                killed_at = time.time() - t0
                reported_done = [f"doc-{k:03d}" for k in range(done_before_kill)]
        out = ingest.stdout.read()
        ingest.wait()
        seconds = time.time() - t0
        report = json.loads(out) if out.strip() else {"documents": []}
        items = report.get("documents", [])
        acked = sorted(x["id"] for x in items if x.get("status") in ("added", "replaced"))
        if args.kill_writer:
            acked = reported_done  # the progress lines it printed before it died
        failed = sorted(x["id"] for x in items if x.get("status") == "failed")
        listed = subprocess.run([binary, "docs", "list", "--store", url, "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
        visible = sorted(d["id"] for d in json.loads(listed.stdout)) if listed.returncode == 0 else []
        snap = os.path.join(folder, "kb.akvs")
        export = subprocess.run([binary, "export", "-o", snap, "--store", url, "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
        exported = json.loads(export.stdout)["snapshot"]["documents"] if export.returncode == 0 else None
        lost = sorted(set(acked) - set(visible))
        # What the crash left, swept (grace 0: the ingest is over); the visible documents must
        # still export whole afterwards.
        sweep = subprocess.run([binary, "sweep", "--older-than", "0s", "--store", url, "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
        swept = json.loads(sweep.stdout) if sweep.returncode == 0 else {}
        export2 = subprocess.run([binary, "export", "-o", snap + "2", "--store", url, "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
        exported2 = json.loads(export2.stdout)["snapshot"]["documents"] if export2.returncode == 0 else None
        if args.keep_errors:
            for name, r in (("list", listed), ("export", export), ("sweep", sweep), ("export-after-sweep", export2)):
                if r.returncode != 0:
                    with open(os.path.join(args.keep_errors, f"trial-{i}-{name}.err"), "w") as f:
                        f.write(r.stderr)
        row = {"trial": i, "documents": args.docs, "killed_master": victim, "killed_after_s": round(killed_at or 0, 2),
               "acknowledged": len(acked), "failed_not_acknowledged": len(failed), "visible": len(visible),
               "lost_acknowledged": lost, "export_ok": export.returncode == 0, "exported": exported,
               "half_visible": 0 if export.returncode == 0 and exported == len(visible) else None,
               "sweep_ok": sweep.returncode == 0, "swept_versions": swept.get("versions_removed"),
               "swept_postings": swept.get("postings_removed"), "swept_catalogue": swept.get("catalogue_entries_removed"),
               "counters_fixed": swept.get("counters_fixed"), "exported_after_sweep": exported2,
               "ingest_seconds": round(seconds, 1), "ingest_exit": ingest.returncode,
               "export_error": export.stderr.strip()[-300:] if export.returncode != 0 else "",
               "list_error": listed.stderr.strip()[-300:] if listed.returncode != 0 else ""}
        return row
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--kill-after", type=int, default=8, help="documents ingested before the kill")
    ap.add_argument("--node-timeout", type=int, default=2000, help="cluster-node-timeout in ms")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/anchorkv"))
    ap.add_argument("--out", default="")
    ap.add_argument("--kill-writer", action="store_true", help="kill the ingest process instead of a master")
    ap.add_argument("--keep-errors", default="", help="a folder to keep the stderr of failed checks in")
    args = ap.parse_args()
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        raise SystemExit("redis-server and redis-cli are needed (tools/setup.sh installs them)")
    env = dict(os.environ)
    for k in ("ANCHORKV_CONFIG", "ANCHORKV_STORE"):
        env.pop(k, None)
    rows = []
    print("| trial | acknowledged | not acknowledged | visible | lost | export whole | swept versions / postings | export whole after sweep | ingest s |")
    print("|---:|---:|---:|---:|---:|---|---:|---|---:|")
    for i in range(args.trials):
        r = trial(i, args, args.binary, env)
        rows.append(r)
        print(f"| {i} | {r['acknowledged']} | {r['failed_not_acknowledged']} | {r['visible']} | {len(r['lost_acknowledged'])} | "
              f"{'yes' if r['half_visible'] == 0 else 'NO ' + r['export_error'] + ' ' + r['list_error']} | "
              f"{r['swept_versions']} / {r['swept_postings']} | {'yes' if r['exported_after_sweep'] == r['visible'] else 'NO'} | {r['ingest_seconds']} |", flush=True)
    summary = {"trials": rows, "lost_acknowledged_total": sum(len(r["lost_acknowledged"]) for r in rows),
               "trials_with_half_visible": sum(1 for r in rows if r["half_visible"] != 0),
               "trials_broken_by_sweep": sum(1 for r in rows if not r["sweep_ok"] or r["exported_after_sweep"] != r["visible"]),
               "node_timeout_ms": args.node_timeout, "documents_per_trial": args.docs,
               "killed": "the ingest process" if args.kill_writer else "a master",
               "cpu": subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()}
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    ok = summary["lost_acknowledged_total"] == 0 and summary["trials_with_half_visible"] == 0 and summary["trials_broken_by_sweep"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
