#!/usr/bin/env python3
"""Bounded load test of `anchorkv serve` on loopback (standard library only).

Starts the server on a fresh temporary store (or uses --url), ingests the sample corpus, then
runs N concurrent query clients for a fixed time while one more client keeps ingesting new
documents. Reports latency percentiles, throughput, errors and the mean decode batch, as JSON
(--out), as a markdown table on stdout and as a PNG (--plot). --clients 1,2,4,8,16 sweeps;
--compare-batching runs each point on a server with batching on and one with it off;
--both-ingest measures each point without and with the concurrent ingest. Every loop is bounded by --duration and --max-requests, and every
request goes to 127.0.0.1 only.

    python3 tools/bench/http_load.py --binary .build/release/anchorkv --clients 8 --duration 60
    python3 tools/bench/http_load.py --clients 1,2,4,8,16 --compare-batching --both-ingest --duration 20 \\
        --out docs/bench/http-load-batching.json --plot docs/http-load.png
"""
import argparse
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tools", "demo", "corpus")
QUESTIONS = [
    "Who decoded the waggle dance of honey bees?",
    "Where does the Danube begin?",
    "Who built the third Eddystone lighthouse?",
    "Where did Gutenberg print his Bible?",
    "How long is the Danube?",
    "What material was the Eddystone lighthouse built from?",
    "What do worker bees do?",
    "When was movable type invented?",
]


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port, token, timeout):
        self.port, self.token, self.timeout = port, token, timeout
        self.conn = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            payload = r.read()
            return r.status, payload
        except Exception:
            self.conn.close()
            self.conn = None
            raise


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def start_server(binary, store, threads, log_path, extra):
    log = open(log_path, "w")
    args = [binary, "serve", "--store", store, "--port", "0", "--no-adapter", "--ratio", "5", "--log-level", "warning"]
    if threads:
        args += ["--threads", str(threads)]
    args += extra
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return p, int(m.group(1))
    p.kill()
    sys.exit("the server did not start; see " + log_path)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def corpus_docs():
    docs = []
    for name in sorted(os.listdir(CORPUS)):
        with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
            docs.append({"id": name, "title": name, "text": f.read()})
    return docs


def run_load(port, token, clients, duration, max_requests, k, max_tokens, ingest, base):
    """One measurement: `clients` query loops (and one ingest loop) for `duration` seconds."""
    stop_at = time.monotonic() + duration
    lock = threading.Lock()
    latencies, errors, answer_tokens = [], [], [0]
    issued = [0]
    ingest_lat, ingest_tokens, ingest_errors = [], [0], []
    tag = "%d-%d" % (clients, int(time.time() * 1000) % 10**9)

    def query_client(idx):
        c = Client(port, token, 300)
        i = idx
        while time.monotonic() < stop_at:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            q = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.monotonic()
            try:
                status, body = c.request("POST", "/v1/query", {"question": q, "k": k, "max_tokens": max_tokens})
                dt = time.monotonic() - t0
                with lock:
                    if status == 200:
                        latencies.append(dt)
                        answer_tokens[0] += json.loads(body)["answer_tokens"]
                    else:
                        errors.append("%d %s" % (status, body[:200].decode(errors="replace")))
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(repr(e))

    def ingest_client():
        c = Client(port, token, 600)
        n = 0
        while time.monotonic() < stop_at:
            d = dict(base[n % len(base)])
            d["id"] = "load-%s-%d" % (tag, n)
            d["text"] = d["text"] + "\nRevision %d of this note." % n
            n += 1
            t0 = time.monotonic()
            try:
                status, body = c.request("POST", "/v1/documents", d)
                dt = time.monotonic() - t0
                if status == 200:
                    doc = json.loads(body)["documents"][0]
                    ingest_lat.append(dt)
                    ingest_tokens[0] += doc.get("tokens", 0)
                else:
                    ingest_errors.append("%d %s" % (status, body[:200].decode(errors="replace")))
            except Exception as e:  # noqa: BLE001
                ingest_errors.append(repr(e))

    load_before = loadavg()
    threads = [threading.Thread(target=query_client, args=(i,)) for i in range(clients)]
    if ingest:
        threads.append(threading.Thread(target=ingest_client))
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t_start
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {
        "clients": clients, "duration_s": round(elapsed, 1), "k": k, "max_tokens": max_tokens,
        "load_average_1m_before_after": [load_before, loadavg()],
        "queries_ok": len(latencies), "query_errors": len(errors), "error_samples": errors[:5],
        "queries_per_s": round(len(latencies) / elapsed, 2),
        "answer_tokens_per_s": round(answer_tokens[0] / elapsed, 1),
        "latency_ms": {"p50": ms(percentile(latencies, 50)), "p90": ms(percentile(latencies, 90)),
                       "p99": ms(percentile(latencies, 99)), "max": ms(max(latencies)) if latencies else None,
                       "mean": ms(statistics.mean(latencies)) if latencies else None},
        "ingest": None if not ingest else {
            "documents": len(ingest_lat), "errors": len(ingest_errors), "error_samples": ingest_errors[:5],
            "tokens_per_s": round(ingest_tokens[0] / elapsed, 1),
            "p50_ms": ms(percentile(ingest_lat, 50)) if ingest_lat else None},
    }


def metric(port, token, name):
    _, metrics = Client(port, token, 30).request("GET", "/metrics")
    for line in metrics.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return "%s (%d cores), %s" % (cpu, os.cpu_count() or 0, platform.platform())


def table(rows):
    out = ["| batching | clients | concurrent ingest | queries ok | errors | queries/s | answer tokens/s | p50 | p99 | mean decode batch |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat, ing = r["latency_ms"], r["ingest"]
        ing_s = "none" if ing is None else "%d docs, %d errors, %.0f tokens/s" % (ing["documents"], ing["errors"], ing["tokens_per_s"])
        out.append("| %s | %d | %s | %d | %d | %.2f | %.1f | %.0f ms | %.0f ms | %s |" % (
            "on" if r["batching"] else "off", r["clients"], ing_s, r["queries_ok"], r["query_errors"], r["queries_per_s"],
            r["answer_tokens_per_s"], lat["p50"], lat["p99"], "%.2f" % r["mean_batch"] if r.get("mean_batch") else "-"))
    return "\n".join(out)


def summarize(rows):
    """One entry per (batching, ingest, clients): queries/s and p99 as min and median over repeats."""
    groups = {}
    for r in rows:
        groups.setdefault((r["batching"], r["ingest"] is not None, r["clients"]), []).append(r)
    out = []
    for (batching, ingest, clients), rs in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1], kv[0][2])):
        qps = [r["queries_per_s"] for r in rs]
        p99 = [r["latency_ms"]["p99"] for r in rs]
        p50 = [r["latency_ms"]["p50"] for r in rs]
        out.append({"batching": batching, "ingest": ingest, "clients": clients, "repeats": len(rs), "max_tokens": rs[0]["max_tokens"],
                    "queries_per_s_min": min(qps), "queries_per_s_median": statistics.median(qps),
                    "p50_ms_median": statistics.median(p50), "p99_ms_min": min(p99), "p99_ms_median": statistics.median(p99),
                    "errors": sum(r["query_errors"] for r in rs),
                    "ingest_tokens_per_s_median": statistics.median([r["ingest"]["tokens_per_s"] for r in rs]) if ingest else None,
                    "mean_batch_median": statistics.median([r["mean_batch"] for r in rs]) if all(r.get("mean_batch") for r in rs) else None})
    return out


def summary_table(summary):
    out = ["| batching | concurrent ingest | clients | queries/s min / median | p50 median | p99 min / median | errors | ingest tokens/s | mean decode batch |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        out.append("| %s | %s | %d | %.2f / %.2f | %.0f ms | %.0f / %.0f ms | %d | %s | %s |" % (
            "on" if s["batching"] else "off", "yes" if s["ingest"] else "no", s["clients"], s["queries_per_s_min"], s["queries_per_s_median"],
            s["p50_ms_median"], s["p99_ms_min"], s["p99_ms_median"], s["errors"],
            "%.0f" % s["ingest_tokens_per_s_median"] if s["ingest"] else "-", "%.2f" % s["mean_batch_median"] if s["mean_batch_median"] else "-"))
    return "\n".join(out)


def plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for batching in (True, False):
        for ingest in (False, True):
            sel = sorted((r for r in summary if r["batching"] == batching and r["ingest"] == ingest), key=lambda r: r["clients"])
            if not sel:
                continue
            label = "batching %s%s" % ("on" if batching else "off", ", with ingest" if ingest else "")
            style = ("-" if batching else "--") + ("s" if ingest else "o")
            xs = [r["clients"] for r in sel]
            a1.plot(xs, [r["queries_per_s_median"] for r in sel], style, label=label)
            a2.plot(xs, [r["p99_ms_median"] for r in sel], style, label=label)
    for ax, title in ((a1, "throughput (queries/s)"), (a2, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle("anchorkv serve on loopback, %d-token answers (median of %d runs per point)" % (summary[0]["max_tokens"], summary[0]["repeats"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "anchorkv"), help="anchorkv binary to start")
    ap.add_argument("--port", type=int, help="use a server already listening on 127.0.0.1:PORT instead of starting one")
    ap.add_argument("--token", default=os.environ.get("ANCHORKV_API_TOKEN"), help="bearer token (default $ANCHORKV_API_TOKEN)")
    ap.add_argument("--clients", default="8", help="concurrent query clients, or a comma list to sweep (e.g. 1,2,4,8,16)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per measurement")
    ap.add_argument("--max-requests", type=int, default=100000, help="stop a measurement after this many queries")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per point (the summary gives min and median)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--no-ingest", action="store_true", help="no concurrent ingest")
    ap.add_argument("--both-ingest", action="store_true", help="measure each point without and with a concurrent ingest")
    ap.add_argument("--compare-batching", action="store_true", help="run every point with batching on and off (a server each)")
    ap.add_argument("--threads", type=int, default=0, help="--threads for the server (default: all cores)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for anchorkv serve (repeatable)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--plot", help="write a PNG of throughput and p99 against clients here")
    a = ap.parse_args()
    client_counts = [int(x) for x in a.clients.split(",")]
    if not all(1 <= c <= 64 for c in client_counts) or not 0 < a.duration <= 600:
        sys.exit("--clients must be 1..64 and --duration 0..600 s")
    if a.port and a.compare_batching:
        sys.exit("--compare-batching starts its own servers; leave out --port")
    if a.plot:
        try:  # checked before minutes of load, not after
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit("--plot needs matplotlib: `python3 -m pip install matplotlib`, or run with a Python that has it (e.g. the repo's .venv)")
    ingest_modes = [False, True] if a.both_ingest else [not a.no_ingest]
    rows, exit_codes = [], []
    for batching in ([True, False] if a.compare_batching else [None]):
        tmp = tempfile.mkdtemp(prefix="akv-load-")
        server = None
        extra = list(a.server_arg) + ([] if batching is None else ["--batching" if batching else "--no-batching"])
        if a.port:
            port = a.port
        else:
            server, port = start_server(a.binary, os.path.join(tmp, "store"), a.threads, os.path.join(tmp, "serve.log"), extra)
        try:
            setup = Client(port, a.token, 600)
            status, body = setup.request("POST", "/v1/documents", {"documents": corpus_docs()})
            if status != 200:
                sys.exit("setup ingest failed: %d %s" % (status, body[:300]))
            _, health = setup.request("GET", "/v1/stats")
            on = json.loads(health)["queries"].get("batching", False)
            base = corpus_docs()
            for ingest in ingest_modes:
                for clients in client_counts:
                    for rep in range(a.repeats):
                        steps0 = metric(port, a.token, "anchorkv_decode_batch_size_count") or 0
                        seqs0 = metric(port, a.token, "anchorkv_decode_batch_size_sum") or 0
                        r = run_load(port, a.token, clients, a.duration, a.max_requests, a.k, a.max_tokens, ingest, base)
                        steps = (metric(port, a.token, "anchorkv_decode_batch_size_count") or 0) - steps0
                        seqs = (metric(port, a.token, "anchorkv_decode_batch_size_sum") or 0) - seqs0
                        r["batching"] = on
                        r["repeat"] = rep
                        r["mean_batch"] = round(seqs / steps, 2) if steps else None
                        rows.append(r)
                        print(table([r]).splitlines()[-1], flush=True)
            store_bpt = metric(port, a.token, "anchorkv_store_bytes_per_token")
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                exit_codes.append(server.wait(timeout=120))
    result = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": machine(),
              "store_bytes_per_token": store_bpt, "server_exit_codes": exit_codes, "runs": rows}
    summary = summarize(rows)
    result["summary"] = summary
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    print()
    print(table(rows))
    print()
    print(summary_table(summary))
    if a.plot:
        plot(summary, a.plot)
    bad = any(r["query_errors"] or (r["ingest"] is not None and r["ingest"]["errors"]) for r in rows) or any(c != 0 for c in exit_codes)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
