"""Cache-aware routing against least-in-flight, side by side (docs/benchmarks.md). Not a test.

The real binaries of this build: one memory service, two generators (one thread each, CPU) and
a gateway, started afresh for every run; the SQuAD paragraphs remembered (not warmed); then
`memgpt batch` answers the questions in fused mode. Each run prints one JSON line: questions/s,
and the memory-KV lookups (hits, misses) summed over both generators' /metrics, with how many
generations each generator ran. The routing rule alternates run by run; medians at the end.

Usage: .venv/bin/python3 scripts/bench/routing.py [--questions 40] [--per-paragraph 5]
       [--articles 5] [--top-k 3] [--new-tokens 16] [--runs 3] [--concurrency 8] [--load-bound 4]
       (build first: cargo build --release --workspace)
The workload is scripts/bench/squad_batch.py's: questions that share passages (the first five
questions of each paragraph in order, 40 in all, so 8 paragraphs), with every paragraph of the
first 5 articles of the public SQuAD file remembered.
"""

import argparse
import json
import os
import statistics
import subprocess
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release")


class Proc:
    """A service binary on 127.0.0.1:0 with JSON logs; its addresses read from its log."""

    def __init__(self, name, args, log_path):
        self.name, self.addrs, self.log = name, {}, open(log_path, "w")
        cmd = [os.path.join(BIN, name), "--listen", "127.0.0.1:0", "--log-format", "json", "--log", "info,qdrant_edge=error", *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.log.write(line)
            self.log.flush()
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if "addr" in fields:
                kind = "metrics" if "metrics" in fields.get("message", "") else "grpc"
                self.addrs.setdefault(kind, fields["addr"])

    def wait(self, *kinds, within=120):
        deadline = time.time() + within
        while not all(k in self.addrs for k in kinds):
            if self.p.poll() is not None or time.time() > deadline:
                sys.exit(f"{self.name} did not start; its log: {self.log.name}")
            time.sleep(0.1)
        return self

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()


def lookups(metrics_addr):
    """(hits, misses, generations) from a generator's Prometheus text."""
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()
    value = lambda name, has: sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{") and has in l)
    hits = value("memgpt_generator_memory_cache_lookups_total", 'outcome="hit"')
    misses = value("memgpt_generator_memory_cache_lookups_total", 'outcome="miss"')
    return hits, misses, value("memgpt_grpc_requests_total", 'Generator/Generate"')


def memgpt(*args, env):
    r = subprocess.run([os.path.join(BIN, "memgpt"), *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"memgpt {args[0]} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def run(routing, work, concurrency, load_bound):
    run_dir = os.path.join(work, f"run-{routing}-{time.time_ns()}")
    os.makedirs(run_dir)
    log = lambda n: os.path.join(run_dir, f"{n}.log")
    procs = [Proc("memgpt-memory", ["--data-dir", os.path.join(run_dir, "data")], log("memory")).wait("grpc")]
    gens = [Proc("memgpt-generator", ["--threads", "1", "--device", "cpu", "--metrics-listen", "127.0.0.1:0"], log(f"generator{i}")) for i in range(2)]
    procs += [g.wait("grpc", "metrics") for g in gens]
    gateway = Proc("memgpt-gateway", ["--memory", f"http://{procs[0].addrs['grpc']}", "--generator", ",".join(f"http://{g.addrs['grpc']}" for g in gens),
                                      "--no-auth", "--device", "cpu", "--encoder-threads", "1", "--generator-routing", routing, "--generator-load-bound", str(load_bound)], log("gateway")).wait("grpc")
    procs.append(gateway)
    try:
        env = dict(os.environ, MEMGPT_ADDR=f"http://{gateway.addrs['grpc']}")
        deadline = time.time() + 300
        while True:
            info = json.loads(memgpt("info", "--json", env=env))
            if info["backends"] and all(b["healthy"] for b in info["backends"]) and info.get("generator"):
                break
            if time.time() > deadline:
                sys.exit(f"backends not healthy: {info}")
            time.sleep(0.5)
        memgpt("remember", os.path.join(work, "paragraphs.jsonl"), env=env)
        answers = os.path.join(run_dir, "answers.jsonl")
        start = time.time()
        memgpt("batch", "--input", os.path.join(work, "questions.jsonl"), "--output", answers, "--concurrency", str(concurrency), env=env)
        seconds = time.time() - start
        ok = sum(json.loads(l)["status"] == "ok" for l in open(answers))
        per = [lookups(g.addrs["metrics"]) for g in gens]
        hits, misses = sum(p[0] for p in per), sum(p[1] for p in per)
        return {"routing": routing, "load_bound": load_bound, "questions": ok, "seconds": round(seconds, 2), "questions_per_s": ok / seconds,
                "memory_kv_hits": hits, "memory_kv_misses": misses, "hit_rate": hits / max(hits + misses, 1),
                "generations_per_generator": [p[2] for p in per]}
    finally:
        for p in reversed(procs):
            p.stop()


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--questions", type=int, default=40)
    a.add_argument("--top-k", type=int, default=3)
    a.add_argument("--new-tokens", type=int, default=16)
    a.add_argument("--per-paragraph", type=int, default=5)
    a.add_argument("--articles", type=int, default=5)
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--concurrency", type=int, default=8)
    a.add_argument("--load-bound", type=int, default=4, help="the gateway's --generator-load-bound")
    args = a.parse_args()
    work = tempfile.mkdtemp(prefix="memgpt-routing-")
    try:
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench", "squad_batch.py"), "--questions", str(args.questions), "--top-k", str(args.top_k),
                        "--new-tokens", str(args.new_tokens), "--per-paragraph", str(args.per_paragraph), "--articles", str(args.articles),
                        "--attend-mode", "fused", "--out", work], check=True)
        rows = []
        for _ in range(args.runs):
            for routing in ("least-in-flight", "cache-aware"):
                row = run(routing, work, args.concurrency, args.load_bound)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = lambda r, k: statistics.median(x[k] for x in rows if x["routing"] == r)
    for r in ("least-in-flight", "cache-aware"):
        print(f"{r:16} questions/s {med(r, 'questions_per_s'):.3f}  memory-KV hit rate {med(r, 'hit_rate'):.3f} (median of {args.runs})")
    print(f"ratio cache-aware / least-in-flight questions/s = {med('cache-aware', 'questions_per_s') / med('least-in-flight', 'questions_per_s'):.2f}x")


if __name__ == "__main__":
    main()
