"""Writes the first N SQuAD questions as `memgpt batch` lines (questions.jsonl: id, question,
options) and their paragraphs as JSONL documents (paragraphs.jsonl: id, text) into --out; with
--per-paragraph K only the first K questions of each paragraph, and with --articles A every
paragraph of the first A articles is remembered (those without a question are distractors)."""

import argparse
import gzip
import json
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SQUAD = os.path.join(ROOT, "..", "shared", "data", "squad", "dev-v1.1-articles-00-23.json.gz")

p = argparse.ArgumentParser()
p.add_argument("--questions", type=int, default=1000)
p.add_argument("--new-tokens", type=int, default=32)
p.add_argument("--top-k", type=int, default=4)
p.add_argument("--per-paragraph", type=int, default=None, help="questions taken from each paragraph (default: all)")
p.add_argument("--articles", type=int, default=0, help="remember every paragraph of the first A articles too")
p.add_argument("--attend-mode", choices=["concat", "fused"], help="options.attend_mode of every question (default: the gateway's)")
p.add_argument("--out", required=True)
args = p.parse_args()
data = json.load(gzip.open(SQUAD))["data"]
questions, paragraphs = [], []
for a, article in enumerate(data):
    for n, para in enumerate(article["paragraphs"]):
        if len(questions) >= args.questions and a >= args.articles:
            break
        paragraphs.append({"id": f"a{a}-p{n}", "text": para["context"]})
        take = min(args.questions - len(questions), len(para["qas"]) if args.per_paragraph is None else args.per_paragraph)
        for qa in para["qas"][: max(take, 0)]:
            options = {"top_k": args.top_k, "max_new_tokens": args.new_tokens, "temperature": 0}
            if args.attend_mode:
                options["attend_mode"] = args.attend_mode
            questions.append({"id": qa["id"], "question": qa["question"], "options": options})
with open(os.path.join(args.out, "questions.jsonl"), "w") as f:
    f.writelines(json.dumps(q) + "\n" for q in questions)
with open(os.path.join(args.out, "paragraphs.jsonl"), "w") as f:
    f.writelines(json.dumps(p) + "\n" for p in paragraphs)
print(f"{len(questions)} questions, {len(paragraphs)} paragraphs")
