#!/usr/bin/env bash
# The batch job's crash check at full size: N SQuAD questions (default 1,000) against
# `memgpt serve` with their paragraphs remembered; the client is killed with SIGKILL once
# about half the lines are written, then rerun; the output must hold exactly one line per id.
# Prints the counts and both runs' summaries. Not a test (the CI-sized check is in
# apps/memgpt/tests/suite/cli/batch.rs).
# Usage: scripts/bench/batch_resume.sh [questions=1000] [threads=2]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
N="${1:-1000}"
THREADS="${2:-2}"
PY="$ROOT/.venv/bin/python3"
cargo build --release --locked -p memgpt >/dev/null 2>&1
MEMGPT="$ROOT/target/release/memgpt"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$PY" scripts/bench/squad_batch.py --questions "$N" --new-tokens 32 --out "$WORK"
"$MEMGPT" serve --listen 127.0.0.1:0 --threads "$THREADS" --data-dir "$WORK/data" 2>"$WORK/serve.log" &
SERVE=$!
until ADDR="$(sed -n 's/^memgpt serving on \([^ ]*\).*/\1/p' "$WORK/serve.log")" && [[ -n "$ADDR" ]]; do
    kill -0 "$SERVE" || { cat "$WORK/serve.log"; exit 1; }
    sleep 0.2
done
export MEMGPT_ADDR="$ADDR"
"$MEMGPT" remember "$WORK/paragraphs.jsonl"
"$MEMGPT" batch --input "$WORK/questions.jsonl" --output "$WORK/answers.jsonl" --concurrency 16 2>"$WORK/first.log" &
CLIENT=$!
until [[ -f "$WORK/answers.jsonl" ]] && (( $(wc -l <"$WORK/answers.jsonl") >= N / 2 )); do
    kill -0 "$CLIENT" || { echo "the batch ended before half" >&2; exit 1; }
    sleep 0.5
done
kill -9 "$CLIENT"; wait "$CLIENT" 2>/dev/null || true
echo "killed with SIGKILL at $(wc -l <"$WORK/answers.jsonl") lines"
"$MEMGPT" batch --input "$WORK/questions.jsonl" --output "$WORK/answers.jsonl" --concurrency 16 2>&1 | tail -2
"$PY" - "$WORK/questions.jsonl" "$WORK/answers.jsonl" <<'PY'
import json, sys
want = [json.loads(l)["id"] for l in open(sys.argv[1])]
got = [json.loads(l)["id"] for l in open(sys.argv[2])]
ok = sum(1 for l in open(sys.argv[2]) if json.loads(l)["status"] == "ok")
print(f"input ids {len(want)}, output lines {len(got)}, distinct {len(set(got))}, answered {ok}")
assert len(got) == len(set(got)) == len(want) and set(got) == set(want), "lost or repeated lines"
print("exactly one line per id")
PY
