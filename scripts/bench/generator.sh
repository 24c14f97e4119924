#!/usr/bin/env bash
# Generator service through gRPC beside llama.cpp's own batched decoding on the same GGUF and
# thread count, alternating runs; prints every JSON line and the medians. Not a test. Needs
# llama-cpp-python in .venv (see models.sh).
# Usage: scripts/bench/generator.sh [runs=3] [threads=2] [new_tokens=64]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RUNS="${1:-3}"
THREADS="${2:-2}"
NEW="${3:-64}"
PY="$ROOT/.venv/bin/python3"
cargo build --release -p memgpt --bin memgpt >/dev/null 2>&1
OUT="$(mktemp)"
for run in $(seq "$RUNS"); do
    MEMGPT_LOG=warn target/release/memgpt bench generator --streams 1,4,16,32 --new-tokens "$NEW" --threads "$THREADS" | tee -a "$OUT"
    for n in 1 4 16 32; do
        "$PY" scripts/bench/peers.py llamacpp-batched --streams "$n" --new-tokens "$NEW" --threads "$THREADS" 2>/dev/null | tee -a "$OUT"
    done
done
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault((r["system"], r["streams"]), []).append(r)
for (system, n), rs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med = lambda k: round(statistics.median(r[k] for r in rs), 1) if k in rs[0] else None
    print(f"{system:18} streams={n:2}  aggregate tok/s={med('aggregate_tokens_per_s')}  "
          f"ttft p50 ms={med('ttft_p50_ms')}  p95 ms={med('ttft_p95_ms')}  (median of {len(rs)})")
PY
