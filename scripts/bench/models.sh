#!/usr/bin/env bash
# Model benchmarks side by side with their peers, same machine, same thread count, alternating
# runs; prints every JSON line and the medians. Not a test. Needs the peers installed once:
#   .venv/bin/pip install "sentence-transformers==5.1.*" "transformers==4.57.*" "gguf==0.17.*" \
#       "accelerate==1.12.*" "llama-cpp-python==0.3.*" torch==2.11.0
# Usage: scripts/bench/models.sh [runs=3] [threads=2]     (PARTS=decoder or PARTS=encoder: one half)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RUNS="${1:-3}"
THREADS="${2:-2}"
PARTS="${PARTS:-encoder,decoder}"
CORPUS="$ROOT/../shared/data/scifact/corpus.jsonl.gz"
PY="$ROOT/.venv/bin/python3"
MEMGPT="$ROOT/target/release/memgpt"
cargo build --release -p memgpt >/dev/null 2>&1
OUT="$(mktemp)"
for run in $(seq "$RUNS"); do
  if [[ "$PARTS" == *encoder* ]]; then
    "$MEMGPT" bench encoder --input "$CORPUS" --limit 300 --batch-size 32 --precision f32 --threads "$THREADS" | tee -a "$OUT"
    # bf16 pays only on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere it is emulated.
    if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
        "$MEMGPT" bench encoder --input "$CORPUS" --limit 300 --batch-size 32 --precision bf16 --threads "$THREADS" | tee -a "$OUT"
    fi
    "$PY" scripts/bench/peers.py encoder --input "$CORPUS" --limit 300 --batch-size 32 --threads "$THREADS" | tee -a "$OUT"
    if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
        "$PY" scripts/bench/peers.py encoder --input "$CORPUS" --limit 300 --batch-size 32 --threads "$THREADS" --precision bf16 | tee -a "$OUT"
    fi
  fi
  if [[ "$PARTS" == *decoder* ]]; then
    "$MEMGPT" bench decoder --streams 1 --new-tokens 64 --threads "$THREADS" | tee -a "$OUT"
    "$MEMGPT" bench decoder --streams 16 --new-tokens 32 --threads "$THREADS" | sed 's/"system":"memgpt"/"system":"memgpt-16"/' | tee -a "$OUT"
    # The same decoder multiplying the dequantised f32 weights only (no GGML block products).
    "$MEMGPT" bench decoder --streams 1 --new-tokens 64 --threads "$THREADS" --block-rows 0 | sed 's/"system":"memgpt"/"system":"memgpt-f32-only"/' | tee -a "$OUT"
    "$MEMGPT" bench decoder --streams 16 --new-tokens 32 --threads "$THREADS" --block-rows 0 | sed 's/"system":"memgpt"/"system":"memgpt-f32-only-16"/' | tee -a "$OUT"
    "$PY" scripts/bench/peers.py llamacpp --new-tokens 64 --threads "$THREADS" | tee -a "$OUT"
    "$PY" scripts/bench/peers.py llamacpp-batched --streams 16 --new-tokens 32 --threads "$THREADS" 2>/dev/null | tee -a "$OUT"
    if [ "$run" = 1 ]; then
        "$PY" scripts/bench/peers.py transformers --new-tokens 16 --threads "$THREADS" | tee -a "$OUT"
    fi
  fi
done
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["system"], []).append(r)
for system, rs in by.items():
    keys = [k for k in ("documents_per_s", "prefill_tokens_per_s", "decode_tokens_per_s") if k in rs[0]]
    print(system, {k: round(statistics.median(r[k] for r in rs), 1) for k in keys}, f"(median of {len(rs)})")
PY
