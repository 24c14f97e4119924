#!/usr/bin/env bash
# Batch question answering: `memgpt batch` against a fresh `memgpt serve`, in concat and in
# fused attend mode, beside a plain Python pipeline (sentence-transformers, qdrant-client's
# local mode, transformers' generate) on the same SQuAD questions, paragraphs, models, top_k,
# greedy max_new_tokens and thread count; runs alternate; prints each run's JSON line and the
# medians. Not a test. Needs the peer installed once (the versions of the figures in
# docs/benchmarks.md):
#   .venv/bin/pip install "qdrant-client==1.20.0" "sentence-transformers==6.3.0" \
#       "transformers==5.25.0" "gguf==0.19.0" "accelerate==1.16.0" torch==2.11.0
#
# Workloads (every paragraph of the first 5 articles remembered, 288; top 3; 40 questions):
#   spread  the first question of each paragraph: every question reads other passages
#   shared  the first five questions of each of 8 paragraphs: questions share passages
# Usage: scripts/bench/batch.sh [spread|shared] [runs=3] [threads=2] [new_tokens=32] [peer_runs=runs]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WORKLOAD="${1:-spread}"
RUNS="${2:-3}"
THREADS="${3:-2}"
NEW="${4:-32}"
PEER_RUNS="${5:-$RUNS}"
case "$WORKLOAD" in
    spread) PER=1 ;;
    shared) PER=5 ;;
    *) echo "unknown workload '$WORKLOAD' (spread or shared)" >&2; exit 2 ;;
esac
PY="$ROOT/.venv/bin/python3"
# The whole workspace, as the test command builds it (one feature set, nothing rebuilt).
cargo build --release --workspace --all-targets --locked >/dev/null 2>&1
MEMGPT="$ROOT/target/release/memgpt"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
for mode in concat fused; do
    mkdir -p "$WORK/$mode"
    "$PY" scripts/bench/squad_batch.py --questions 40 --per-paragraph "$PER" --articles 5 --top-k 3 \
        --new-tokens "$NEW" --attend-mode "$mode" --out "$WORK/$mode"
done

start_serve() {
    rm -rf "$WORK/data" "$WORK/serve.log"
    "$MEMGPT" serve --listen 127.0.0.1:0 --threads "$THREADS" --data-dir "$WORK/data" 2>"$WORK/serve.log" &
    SERVE=$!
    until ADDR="$(sed -n 's/^memgpt serving on \([^ ]*\).*/\1/p' "$WORK/serve.log")" && [[ -n "$ADDR" ]]; do
        kill -0 "$SERVE" || { cat "$WORK/serve.log"; exit 1; }
        sleep 0.2
    done
    export MEMGPT_ADDR="$ADDR"
    "$MEMGPT" remember "$WORK/concat/paragraphs.jsonl" >/dev/null
}

# One timed `memgpt batch` of mode $1 on a fresh server (cold memory-KV cache).
memgpt_run() {
    start_serve
    rm -f "$WORK/answers.jsonl"
    START=$(date +%s.%N)
    "$MEMGPT" batch --input "$WORK/$1/questions.jsonl" --output "$WORK/answers.jsonl" --concurrency 16 2>"$WORK/batch.log"
    END=$(date +%s.%N)
    tail -1 "$WORK/batch.log" >&2
    cp "$WORK/answers.jsonl" "$WORK/answers-$1.jsonl"
    "$PY" -c "import json; n=sum(1 for l in open('$WORK/answers.jsonl') if json.loads(l)['status']=='ok'); s=$END-$START; print(json.dumps({'system':'memgpt-batch-$1','questions':n,'seconds':s,'questions_per_s':n/s,'threads':$THREADS}))" | tee -a "$OUT"
    kill -TERM "$SERVE"; wait "$SERVE" || true
}

OUT="$WORK/results.jsonl"
for run in $(seq "$RUNS"); do
    memgpt_run concat
    memgpt_run fused
    if (( run <= PEER_RUNS )); then
        "$PY" scripts/bench/peers.py batch-qa --paragraphs "$WORK/concat/paragraphs.jsonl" --questions "$WORK/concat/questions.jsonl" \
            --output "$WORK/peer.jsonl" --top-k 3 --new-tokens "$NEW" --threads "$THREADS" 2>/dev/null | tee -a "$OUT"
    fi
done
"$PY" - "$OUT" "$WORK" <<'PY'
import json, os, re, statistics, string, sys
import gzip

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {s: statistics.median(r["questions_per_s"] for r in rows if r["system"] == s) for s in {r["system"] for r in rows}}
for s, v in sorted(med.items()):
    print(f"{s:22} questions/s {v:.3f} (median of {sum(r['system'] == s for r in rows)})")
for num, den in [("memgpt-batch-fused", "memgpt-batch-concat"), ("memgpt-batch-fused", "python-pipeline"), ("memgpt-batch-concat", "python-pipeline")]:
    if num in med and den in med:
        print(f"ratio {num} / {den} = {med[num] / med[den]:.2f}x")

# SQuAD token F1 of the last run's answers, per mode (the official normalisation).
def norm(s):
    s = "".join(c for c in s.lower() if c not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", s).split()

def f1(pred, gold):
    p, g = norm(pred), norm(gold)
    common = sum(min(p.count(w), g.count(w)) for w in set(p))
    return 0.0 if common == 0 else 2 * common / (len(p) + len(g))

squad = os.path.join(os.getcwd(), "..", "shared", "data", "squad", "dev-v1.1-articles-00-23.json.gz")
golds = {qa["id"]: [a["text"] for a in qa["answers"]] for art in json.load(gzip.open(squad))["data"] for p in art["paragraphs"] for qa in p["qas"]}
for mode in ["concat", "fused"]:
    path = os.path.join(sys.argv[2], f"answers-{mode}.jsonl")
    if os.path.exists(path):
        answers = [json.loads(l) for l in open(path)]
        scores = [max(f1(a.get("answer", ""), g) for g in golds[a["id"]]) for a in answers if a["id"] in golds]
        print(f"F1[{mode}] {100 * statistics.mean(scores):.2f} over {len(scores)} answers")
PY
