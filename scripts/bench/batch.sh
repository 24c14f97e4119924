#!/usr/bin/env bash
# Batch question answering: `memgpt batch` against a fresh `memgpt serve` beside a plain Python
# pipeline (sentence-transformers, qdrant-client's local mode, transformers' generate) on the
# same SQuAD questions, paragraphs, models, top_k, greedy max_new_tokens and thread count,
# alternating runs; prints each run's JSON line and the medians. Not a test. Needs
# qdrant-client in .venv (pip install qdrant-client "torch==2.11.0").
# Usage: scripts/bench/batch.sh [questions=100] [runs=3] [threads=2] [new_tokens=32]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
N="${1:-100}"
RUNS="${2:-3}"
THREADS="${3:-2}"
NEW="${4:-32}"
PY="$ROOT/.venv/bin/python3"
cargo build --release --locked -p memgpt >/dev/null 2>&1
MEMGPT="$ROOT/target/release/memgpt"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$PY" scripts/bench/squad_batch.py --questions "$N" --new-tokens "$NEW" --out "$WORK"

start_serve() {
    rm -rf "$WORK/data" "$WORK/serve.log"
    "$MEMGPT" serve --listen 127.0.0.1:0 --threads "$THREADS" --data-dir "$WORK/data" 2>"$WORK/serve.log" &
    SERVE=$!
    until ADDR="$(sed -n 's/^memgpt serving on \([^ ]*\).*/\1/p' "$WORK/serve.log")" && [[ -n "$ADDR" ]]; do
        kill -0 "$SERVE" || { cat "$WORK/serve.log"; exit 1; }
        sleep 0.2
    done
    export MEMGPT_ADDR="$ADDR"
    "$MEMGPT" remember "$WORK/paragraphs.jsonl" >/dev/null
}

OUT="$WORK/results.jsonl"
for run in $(seq "$RUNS"); do
    start_serve
    rm -f "$WORK/answers.jsonl"
    START=$(date +%s.%N)
    "$MEMGPT" batch --input "$WORK/questions.jsonl" --output "$WORK/answers.jsonl" --concurrency 16 2>"$WORK/batch.log"
    END=$(date +%s.%N)
    tail -1 "$WORK/batch.log" >&2
    "$PY" -c "import json,sys; n=sum(1 for l in open('$WORK/answers.jsonl') if json.loads(l)['status']=='ok'); s=$END-$START; print(json.dumps({'system':'memgpt-batch','questions':n,'seconds':s,'questions_per_s':n/s,'threads':$THREADS}))" | tee -a "$OUT"
    kill -TERM "$SERVE"; wait "$SERVE" || true
    "$PY" scripts/bench/peers.py batch-qa --paragraphs "$WORK/paragraphs.jsonl" --questions "$WORK/questions.jsonl" \
        --output "$WORK/peer.jsonl" --top-k 4 --new-tokens "$NEW" --threads "$THREADS" 2>/dev/null | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {s: statistics.median(r["questions_per_s"] for r in rows if r["system"] == s) for s in {r["system"] for r in rows}}
for s, v in sorted(med.items()):
    print(f"{s:16} questions/s {v:.3f} (median of {sum(r['system'] == s for r in rows)})")
if len(med) == 2:
    print(f"ratio memgpt-batch / python-pipeline = {med['memgpt-batch'] / med['python-pipeline']:.2f}x")
PY
