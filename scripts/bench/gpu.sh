#!/usr/bin/env bash
# CUDA benchmarks with random weights of real shapes, side by side with their peers (transformers'
# generate; sentence-transformers) in the same session: the encoder (all-MiniLM-L6-v2's shape,
# real tokenizer) on a corpus, and the decoder at SmolLM2-135M's and Llama-3-8B's shapes, one and
# 16 streams. Then the CPU-against-CUDA tests. Prints every JSON line and the medians. Not a test.
#
# Needs a CUDA machine with python3 holding torch 2.11, transformers and sentence-transformers.
# Defaults suit this repository after `scripts/setup` and `cargo build --release`; on a machine
# that only received the binaries, point the variables at them (LD_LIBRARY_PATH at that
# python's torch/lib when the binaries' rpath does not reach a libtorch there).
#   MEMGPT=target/release/memgpt DEVICES_TEST=<the models crate's `models` test binary> \
#   CORPUS=../shared/data/scifact/corpus.jsonl.gz TOKENIZER_DIR=models/all-MiniLM-L6-v2 \
#   scripts/bench/gpu.sh [repeat=3] [new_tokens=128]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPEAT="${1:-3}"
NEW="${2:-128}"
MEMGPT="${MEMGPT:-$ROOT/target/release/memgpt}"
CORPUS="${CORPUS:-$ROOT/../shared/data/scifact/corpus.jsonl.gz}"
TOKENIZER_DIR="${TOKENIZER_DIR:-$ROOT/models/all-MiniLM-L6-v2}"
PY="${PY:-python3}"
PEERS="$ROOT/scripts/bench/gpu_peers.py"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
OUT="$WORK/lines"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

"$PY" "$PEERS" encoder-model --tokenizer-dir "$TOKENIZER_DIR" --out "$WORK/models/all-MiniLM-L6-v2"
for precision in f32 bf16; do
    "$MEMGPT" bench encoder --device cuda --models-dir "$WORK/models" --input "$CORPUS" --limit 100000 \
        --batch-size 32 --precision "$precision" --repeat "$REPEAT" | tee -a "$OUT"
done
"$PY" "$PEERS" encoder --model "$WORK/models/all-MiniLM-L6-v2" --input "$CORPUS" --batch-size 32 \
    --repeat "$REPEAT" | tee -a "$OUT"
for shape in smollm2-135m llama3-8b; do
    "$MEMGPT" bench decoder --device cuda --shape "$shape" --streams 1,16 --new-tokens "$NEW" \
        --repeat "$REPEAT" | tee -a "$OUT"
    "$PY" "$PEERS" decoder --shape "$shape" --streams 1,16 --new-tokens "$NEW" --repeat "$REPEAT" | tee -a "$OUT"
done
if [ -n "${DEVICES_TEST:-}" ]; then
    "$DEVICES_TEST" devices:: --ignored --nocapture --test-threads 1
fi

"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    key = (r["system"], r.get("model", ""), r.get("streams", ""))
    by.setdefault(key, []).append(r)
for key, rs in by.items():
    keys = [k for k in ("documents_per_s", "prefill_tokens_per_s", "decode_tokens_per_s") if k in rs[0]]
    print(*key, {k: round(statistics.median(r[k] for r in rs), 1) for k in keys}, f"(median of {len(rs)})")
PY
