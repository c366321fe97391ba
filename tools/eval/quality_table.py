#!/usr/bin/env python3
"""Prints the markdown quality table from tools/eval/run_quality.sh's summaries.

  python3 tools/eval/quality_table.py [docs/bench/quality]

Rows: systems present; columns per task: SQuAD EM / F1 and the paper's ROUGE-1 F / raw EM,
each row's F1 as a share of the fine-tuned full-context F1, the share of Full-FT's gain over
the fine-tuned closed book that the row keeps ((F1 - closed book) / (Full-FT - closed book)),
and the KV bytes stored per source token (fp16 K and V of every layer for each cached row:
2 x layers x kv_dim x 2 bytes, 23040 for SmolLM2-135M).
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
    ctx = sum(p.get("contextTokens", 0) for p in preds)
    return {"tasks": out, "mean_kv_rows": sum(p["kvRows"] for p in preds) / len(preds),
            "kv_rows_per_token": sum(p["kvRows"] for p in preds) / ctx if ctx else None}


BYTES_PER_ROW = 2 * 30 * 192 * 2  # K and V, 30 layers, kv_dim 192, fp16


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
    floor = rows.get("closed-book-ft")
    head = ("| system | KV rows | KV bytes / token |" + "".join(f" {t} EM / F1 |" for t in tasks)
            + " ROUGE-1 F / raw EM (all) | F1 vs Full-FT | gain kept |")
    print(head)
    print("|---|---:|---:|" + "---:|" * len(tasks) + "---:|---:|---:|")
    for key, label in ORDER:
        if key not in rows:
            continue
        r = rows[key]
        cells = "".join(f" {r['tasks'][t]['em']:.1f} / {r['tasks'][t]['f1']:.1f} |" if t in r["tasks"] else " - |" for t in tasks)
        a = r["tasks"]["all"]
        share = f"{100 * a['f1'] / ref['tasks']['all']['f1']:.0f}%" if ref and ref["tasks"]["all"]["f1"] > 0 else "-"
        gain = "-"
        if ref and floor and ref["tasks"]["all"]["f1"] > floor["tasks"]["all"]["f1"]:
            f0, f1 = floor["tasks"]["all"]["f1"], ref["tasks"]["all"]["f1"]
            gain = f"{100 * (a['f1'] - f0) / (f1 - f0):.0f}%"
        bpt = "-" if key.startswith("closed-book") or not r["kv_rows_per_token"] else f"{r['kv_rows_per_token'] * BYTES_PER_ROW:.0f}"
        print(f"| {label} | {r['mean_kv_rows']:.0f} | {bpt} |{cells} {a['rouge1_f']:.1f} / {a['raw_em']:.1f} | {share} | {gain} |")
    n = {t: next(iter(rows.values()))["tasks"][t]["count"] for t in tasks}
    print("\nQuestions per task: " + ", ".join(f"{t} {c}" for t, c in n.items()))


if __name__ == "__main__":
    main()
