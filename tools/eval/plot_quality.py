#!/usr/bin/env python3
"""The two plots of docs/quality.md (PNG, committed next to it).

  .venv/bin/python tools/eval/plot_quality.py [--runs tools/sac/runs] [--quality docs/bench/quality] [--out docs]

- quality-dev-loss.png: dev answer loss (nats per answer token, eos excluded) against QA
  examples seen, for every run in tools/sac/runs/*/dev.csv (stage 2 only; stage 1 rows are
  drawn at x = 0), own passage (solid) and another passage's context (dashed).
- quality-f1-vs-ratio.png: SQuAD F1 on the held-out split against the compression ratio
  (1 = full context, 5, 15), from tools/eval/run_quality.sh's summaries, with the fine-tuned
  closed book as the floor. Skipped while those summaries do not exist.
Needs matplotlib (pip install matplotlib into the .venv).
"""
import argparse
import csv
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LABELS = {"fullft": "Full-FT (full context, teacher)", "r5": "SAC r=5", "r15": "SAC r=15"}


def read_dev(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r["dev_loss"] not in ("", "nan")]


def plot_dev(runs, out):
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    n = 0
    for name in sorted(os.listdir(runs)):
        p = os.path.join(runs, name, "dev.csv")
        if not os.path.exists(p):
            continue
        rows = read_dev(p)
        if not rows:
            continue
        x = [int(r["examples"]) if r["stage"] == "2" else 0 for r in rows]
        line, = ax.plot(x, [float(r["dev_loss"]) for r in rows], "o-", ms=3, label=LABELS.get(name, name))
        ax.plot(x, [float(r["dev_loss_wrong"]) for r in rows], "--", color=line.get_color(), lw=1,
                label=f"{LABELS.get(name, name)}, wrong passage")
        n += 1
    if not n:
        print("no dev.csv with rows; nothing to plot")
        return
    ax.axhline(3.5, color="grey", lw=0.6, ls=":")
    ax.axhline(2.8, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("QA examples seen")
    ax.set_ylabel("dev answer loss (nats / token)")
    ax.set_title("Held-out dev answer loss (gates at 3.5 and 2.8 dotted)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def plot_f1(quality, out):
    def f1(key):
        p = os.path.join(quality, key + ".json")
        if not os.path.exists(p):
            return None
        with open(p) as f:
            s = json.load(f)
        tasks = s.get("tasks") or s.get("summary", {}).get("tasks")
        return tasks["all"]["f1"] if tasks else None
    pts = [(1, f1("full-ft")), (5, f1("sac-r5")), (15, f1("sac-r15"))]
    if any(v is None for _, v in pts):
        print(f"quality summaries missing in {quality}; F1-vs-ratio plot skipped")
        return
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([r for r, _ in pts], [v for _, v in pts], "o-", label="trained (Full-FT at 1, SAC at 5 and 15)")
    free = [(5, f1("anchors-r5")), (15, f1("anchors-r15"))]
    if all(v is not None for _, v in free):
        ax.plot([r for r, _ in free], [v for _, v in free], "s--", label="training-free anchors")
    cb = f1("closed-book-ft")
    if cb is not None:
        ax.axhline(cb, color="grey", ls=":", label="closed book, fine-tuned")
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 15])
    ax.set_xticklabels(["1", "5", "15"])
    ax.set_xlabel("compression ratio (KV rows kept = 1/ratio)")
    ax.set_ylabel("SQuAD F1, held-out split")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=os.path.join(ROOT, "tools", "sac", "runs"))
    ap.add_argument("--quality", default=os.path.join(ROOT, "docs", "bench", "quality"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    a = ap.parse_args()
    plot_dev(a.runs, os.path.join(a.out, "quality-dev-loss.png"))
    plot_f1(a.quality, os.path.join(a.out, "quality-f1-vs-ratio.png"))


if __name__ == "__main__":
    main()
