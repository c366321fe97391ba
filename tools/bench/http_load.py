#!/usr/bin/env python3
"""Bounded load test of `anchorkv serve` on loopback (standard library only).

Starts the server on a fresh temporary store (or uses --url), ingests the sample corpus, then
runs N concurrent query clients for a fixed time while one more client keeps ingesting new
documents. Reports latency percentiles, throughput and errors, as JSON (--out) and as a
markdown table on stdout. Every loop is bounded by --duration and --max-requests, and every
request goes to 127.0.0.1 only.

    python3 tools/bench/http_load.py --binary .build/release/anchorkv --clients 8 --duration 60
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "anchorkv"), help="anchorkv binary to start")
    ap.add_argument("--port", type=int, help="use a server already listening on 127.0.0.1:PORT instead of starting one")
    ap.add_argument("--token", default=os.environ.get("ANCHORKV_API_TOKEN"), help="bearer token (default $ANCHORKV_API_TOKEN)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=100000, help="stop after this many queries in total")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--no-ingest", action="store_true", help="no concurrent ingest")
    ap.add_argument("--threads", type=int, default=0, help="--threads for the server (default: all cores)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for anchorkv serve (repeatable)")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    if not (1 <= a.clients <= 64 and 0 < a.duration <= 600):
        sys.exit("--clients must be 1..64 and --duration 0..600 s")

    tmp = tempfile.mkdtemp(prefix="akv-load-")
    server = None
    if a.port:
        port = a.port
    else:
        server, port = start_server(a.binary, os.path.join(tmp, "store"), a.threads, os.path.join(tmp, "serve.log"), a.server_arg)
    try:
        setup = Client(port, a.token, 600)
        status, body = setup.request("POST", "/v1/documents", {"documents": corpus_docs()})
        if status != 200:
            sys.exit("setup ingest failed: %d %s" % (status, body[:300]))
        base = corpus_docs()

        stop_at = time.monotonic() + a.duration
        lock = threading.Lock()
        latencies, errors, answer_tokens = [], [], [0]
        issued = [0]
        ingest_lat, ingest_tokens, ingest_errors = [], [0], []

        def query_client(idx):
            c = Client(port, a.token, 300)
            i = idx
            while time.monotonic() < stop_at:
                with lock:
                    if issued[0] >= a.max_requests:
                        return
                    issued[0] += 1
                q = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                t0 = time.monotonic()
                try:
                    status, body = c.request("POST", "/v1/query", {"question": q, "k": a.k, "max_tokens": a.max_tokens})
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
            c = Client(port, a.token, 600)
            n = 0
            while time.monotonic() < stop_at:
                d = dict(base[n % len(base)])
                d["id"] = "load-%d" % n
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
        threads = [threading.Thread(target=query_client, args=(i,)) for i in range(a.clients)]
        if not a.no_ingest:
            threads.append(threading.Thread(target=ingest_client))
        t_start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t_start
        load_after = loadavg()

        status, metrics = Client(port, a.token, 30).request("GET", "/metrics")
        store_bpt = None
        for line in metrics.decode().splitlines():
            if line.startswith("anchorkv_store_bytes_per_token "):
                store_bpt = float(line.split()[1])
    finally:
        exit_code = None
        if server is not None:
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(timeout=120)

    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": "%s (%d cores), %s" % (cpu, os.cpu_count() or 0, platform.platform()),
        "load_average_1m_before_after": [load_before, load_after],
        "clients": a.clients, "duration_s": round(elapsed, 1), "k": a.k, "max_tokens": a.max_tokens,
        "queries_ok": len(latencies), "query_errors": len(errors), "error_samples": errors[:5],
        "queries_per_s": round(len(latencies) / elapsed, 2),
        "answer_tokens_per_s": round(answer_tokens[0] / elapsed, 1),
        "latency_ms": {"p50": ms(percentile(latencies, 50)), "p90": ms(percentile(latencies, 90)),
                       "p99": ms(percentile(latencies, 99)), "max": ms(max(latencies)) if latencies else None,
                       "mean": ms(statistics.mean(latencies)) if latencies else None},
        "ingest": None if a.no_ingest else {
            "documents": len(ingest_lat), "errors": len(ingest_errors), "error_samples": ingest_errors[:5],
            "tokens_per_s": round(ingest_tokens[0] / elapsed, 1),
            "p50_ms": ms(percentile(ingest_lat, 50)) if ingest_lat else None},
        "store_bytes_per_token": store_bpt,
        "server_exit_code": exit_code,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    print(json.dumps(result, indent=2))
    lat = result["latency_ms"]
    print()
    print("| clients | duration | queries ok | errors | queries/s | p50 | p90 | p99 | max | concurrent ingest |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ing = result["ingest"]
    ing_s = "none" if ing is None else "%d docs, %d errors, %.0f tokens/s" % (ing["documents"], ing["errors"], ing["tokens_per_s"])
    print("| %d | %.0f s | %d | %d | %.2f | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %s |" % (
        a.clients, elapsed, len(latencies), len(errors), result["queries_per_s"], lat["p50"], lat["p90"], lat["p99"],
        lat["max"] or 0, ing_s))
    bad = errors or (ing is not None and ing["errors"]) or (exit_code not in (None, 0))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
