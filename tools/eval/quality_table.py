#!/usr/bin/env python3
"""Prints the markdown quality table from tools/eval/run_quality.sh's summaries.

  python3 tools/eval/quality_table.py [docs/bench/quality]

Rows: systems present; columns per task: SQuAD EM / F1 and the paper's ROUGE-1 F / raw EM,
and each SAC row's F1 as a share of the fine-tuned full-context F1 (the issue's target).
"""
import json
import os
import sys

ORDER = [
    ("full-ft", "full context, LoRA fine-tuned (Full-FT, upper bound)"),
    ("full-base", "full context, base model"),
    ("sac-r5", "SAC r=5 (trained adapter)"),
    ("sac-r15", "SAC r=15 (trained adapter)"),
    ("sac-r51", "SAC r=51 (trained adapter)"),
    ("anchors-r5", "anchors r=5, no adapter (training-free)"),
    ("anchors-r15", "anchors r=15, no adapter (training-free)"),
    ("closed-book-ft", "closed book, LoRA fine-tuned"),
    ("closed-book", "closed book, base model"),
]


def summarize(preds: list) -> dict:
    """Per-task means (percent) of the scores stored with each prediction."""
    out = {}
    for task in sorted({p["task"] for p in preds}) + ["all"]:
        sel = [p for p in preds if task == "all" or p["task"] == task]
        mean = lambda k: 100 * sum(p["score"][k] for p in sel) / len(sel)
        out[task] = {"count": len(sel), "em": mean("em"), "f1": mean("f1"), "rouge1_f": mean("rouge1"), "raw_em": mean("rawEM")}
    return {"tasks": out, "mean_kv_rows": sum(p["kvRows"] for p in preds) / len(preds)}


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "docs/bench/quality"
    preds = {}
    for key, _ in ORDER:
        path = os.path.join(folder, key + ".predictions.jsonl")
        if os.path.exists(path) and os.path.exists(os.path.join(folder, key + ".json")):
            with open(path) as f:
                preds[key] = [json.loads(line) for line in f if line.strip()]
    if not preds:
        sys.exit(f"no predictions in {folder}; run tools/eval/run_quality.sh first")
    # Score every system on the questions all of them answered (runs may use different --per-task).
    common = set.intersection(*(set(p["id"] for p in v) for v in preds.values()))
    rows = {k: summarize([p for p in v if p["id"] in common]) for k, v in preds.items()}
    tasks = sorted({t for r in rows.values() for t in r["tasks"] if t != "all"}) + ["all"]
    ref = rows.get("full-ft")
    head = "| system | KV rows |" + "".join(f" {t} EM / F1 |" for t in tasks) + " ROUGE-1 F / raw EM (all) | F1 vs Full-FT |"
    print(head)
    print("|---|---:|" + "---:|" * len(tasks) + "---:|---:|")
    for key, label in ORDER:
        if key not in rows:
            continue
        r = rows[key]
        cells = "".join(f" {r['tasks'][t]['em']:.1f} / {r['tasks'][t]['f1']:.1f} |" if t in r["tasks"] else " - |" for t in tasks)
        a = r["tasks"]["all"]
        share = f"{100 * a['f1'] / ref['tasks']['all']['f1']:.0f}%" if ref and ref["tasks"]["all"]["f1"] > 0 else "-"
        print(f"| {label} | {r['mean_kv_rows']:.0f} |{cells} {a['rouge1_f']:.1f} / {a['raw_em']:.1f} | {share} |")
    n = {t: next(iter(rows.values()))["tasks"][t]["count"] for t in tasks}
    print("\nQuestions per task: " + ", ".join(f"{t} {c}" for t, c in n.items()))


if __name__ == "__main__":
    main()
