"""Peers of the model benchmarks, run in the same session as `memgpt bench` (see models.sh).
Each prints one JSON line like the Rust side.

    peers.py encoder --input corpus.jsonl.gz --limit 1000 --batch-size 32 --threads 2
    peers.py llamacpp --streams 1 --new-tokens 64 --threads 2
    peers.py llamacpp-batched --streams 16 --new-tokens 64 --threads 2
    peers.py transformers --new-tokens 32 --threads 2
    peers.py batch-qa --paragraphs p.jsonl --questions q.jsonl --output a.jsonl --top-k 4 --new-tokens 32
"""

import argparse
import contextlib
import gzip
import json
import os
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "models")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The same prompt as apps/memgpt/src/bin/memgpt/bench.rs.
PROMPT = ("Write a long story about a lighthouse keeper who discovers a map in a bottle, with many "
          "details about the sea, the weather and the village nearby.")


def encoder(args):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    opener = gzip.open if args.input.endswith(".gz") else open
    texts = []
    with opener(args.input, "rt") as f:
        for line in f:
            d = json.loads(line)
            texts.append((d.get("title", "") + " " + d.get("text", "")).strip())
            if len(texts) == args.limit:
                break
    model = SentenceTransformer(os.path.join(MODELS, "all-MiniLM-L6-v2"), device="cpu")
    # bf16: PyTorch's own CPU autocast around the same model (what a Python user would try).
    context = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    with context:
        model.encode(texts[: args.batch_size], batch_size=args.batch_size)
        start = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size)
        secs = time.perf_counter() - start
    system = "sentence-transformers" + ("-bf16-autocast" if args.precision == "bf16" else "")
    print(json.dumps({"system": system, "documents": len(texts), "seconds": secs,
                      "documents_per_s": len(texts) / secs, "threads": torch.get_num_threads()}))


def llamacpp(args):
    from llama_cpp import Llama

    llm = Llama(model_path=os.path.join(MODELS, GGUF), n_threads=args.threads, n_ctx=1024, verbose=False)
    text = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
    # Prefill alone.
    llm.reset()
    start = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - start
    # Decoding: greedy, one token at a time, ignoring EOS.
    generated = 0
    start = time.perf_counter()
    for _ in range(args.new_tokens):
        token = llm.sample(top_k=1, temp=0.0)
        llm.eval([token])
        generated += 1
    decode = time.perf_counter() - start
    print(json.dumps({"system": "llama.cpp", "streams": 1, "prompt_tokens": len(tokens),
                      "prefill_tokens_per_s": len(tokens) / prefill,
                      "decode_tokens_per_s": generated / decode, "threads": args.threads}))


def bench_prompts(n):
    """The shared benchmark prompts (scripts/bench/prompts.txt), as many as `n`, cycled."""
    with open(os.path.join(ROOT, "scripts", "bench", "prompts.txt")) as f:
        prompts = [line.strip() for line in f if line.strip()]
    return [prompts[i % len(prompts)] for i in range(n)]


def llamacpp_batched(args):
    """llama.cpp's own batched decoding (one llama_batch holding a token of every sequence),
    greedy, ignoring EOS; the wall time includes prefilling every prompt."""
    import llama_cpp as L
    import numpy as np

    L.llama_backend_init()
    model = L.llama_model_load_from_file(os.path.join(MODELS, GGUF).encode(), L.llama_model_default_params())
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)

    def tokenize(text):
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 16))()
        n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
        return list(buf[:n])

    template = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
    prompts = [tokenize(template.format(p)) for p in bench_prompts(args.streams)]
    params = L.llama_context_default_params()
    # One KV stream per sequence (not unified): each token attends only to its own sequence.
    params.n_ctx = args.streams * (max(len(p) for p in prompts) + args.new_tokens + 8)
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = args.streams
    params.kv_unified = False
    params.n_threads = params.n_threads_batch = args.threads
    ctx = L.llama_init_from_model(model, params)
    batch = L.llama_batch_init(512, 0, 1)

    def run(items):
        """Decodes (token, pos, seq, wants_logits) items in chunks of 512; returns the batch
        index of each logits row, per sequence, for the last chunk holding it."""
        rows = {}
        for start in range(0, len(items), 512):
            batch.n_tokens = 0
            for i, (tok, pos, seq, logits) in enumerate(items[start:start + 512]):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits
                batch.n_tokens = i + 1
                if logits:
                    rows[seq] = i
            assert L.llama_decode(ctx, batch) == 0
            if start + 512 < len(items):
                # Logits are only kept for the last decode; sample those sequences now.
                for seq, i in list(rows.items()):
                    if not isinstance(i, tuple):
                        rows[seq] = ("done", argmax(i))
        return rows

    def argmax(i):
        ptr = L.llama_get_logits_ith(ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    start = time.perf_counter()
    rows = run([(t, j, s, j == len(p) - 1) for s, p in enumerate(prompts) for j, t in enumerate(p)])
    next_tokens = [rows[s][1] if isinstance(rows[s], tuple) else argmax(rows[s]) for s in range(len(prompts))]
    ttft = time.perf_counter() - start
    positions = [len(p) for p in prompts]
    generated = len(prompts)
    for _ in range(args.new_tokens - 1):
        rows = run([(next_tokens[s], positions[s], s, True) for s in range(len(prompts))])
        next_tokens = [argmax(rows[s]) for s in range(len(prompts))]
        positions = [p + 1 for p in positions]
        generated += len(prompts)
    secs = time.perf_counter() - start
    print(json.dumps({"system": "llama.cpp-batched", "streams": args.streams, "completion_tokens": generated,
                      "seconds": secs, "aggregate_tokens_per_s": generated / secs, "ttft_p50_ms": ttft * 1e3,
                      "decode_tokens_per_s": (generated - len(prompts)) / (secs - ttft),
                      "threads": args.threads}))
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


def transformers_generate(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=GGUF, dtype=torch.float32).eval()
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    mask = torch.ones_like(ids)
    kwargs = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, **kwargs)
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kwargs)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=args.new_tokens, **kwargs)
        total = time.perf_counter() - start
    print(json.dumps({"system": "transformers", "streams": 1, "prompt_tokens": ids.shape[1],
                      "prefill_tokens_per_s": ids.shape[1] / prefill,
                      "decode_tokens_per_s": (args.new_tokens - 1) / max(total - prefill, 1e-9),
                      "threads": torch.get_num_threads()}))


# The gateway's question-answering system prompt (services/gateway/src/ask.rs).
QA_SYSTEM = ("Answer the user's question using the numbered passages below. "
             "Answer briefly, in one sentence.")


def batch_qa(args):
    """A plain Python pipeline doing the batch job: sentence-transformers encodes, qdrant-client's
    local mode stores and searches, transformers' generate answers, one question at a time."""
    import torch
    from qdrant_client import QdrantClient, models
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    encoder = SentenceTransformer(os.path.join(MODELS, "all-MiniLM-L6-v2"), device="cpu")
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=GGUF, dtype=torch.float32).eval()
    paragraphs = [json.loads(l) for l in open(args.paragraphs)]
    questions = [json.loads(l) for l in open(args.questions)]
    db = QdrantClient(":memory:")
    db.create_collection("memories", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    vectors = encoder.encode([p["text"] for p in paragraphs], batch_size=32, normalize_embeddings=True)
    db.upsert("memories", points=[models.PointStruct(id=i, vector=v.tolist(), payload={"id": p["id"], "text": p["text"]})
                                  for i, (p, v) in enumerate(zip(paragraphs, vectors))])
    start = time.perf_counter()
    latencies = []
    with open(args.output, "w") as out, torch.no_grad():
        for q in questions:
            t0 = time.perf_counter()
            qv = encoder.encode([q["question"]], normalize_embeddings=True)[0]
            hits = db.query_points("memories", query=qv.tolist(), limit=args.top_k).points
            block = "".join(f"\n\n[{i + 1}] {h.payload['text']}" for i, h in enumerate(hits))
            messages = [{"role": "system", "content": QA_SYSTEM + block}, {"role": "user", "content": q["question"]}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                 do_sample=False, pad_token_id=tok.eos_token_id)
            answer = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
            latencies.append(time.perf_counter() - t0)
            out.write(json.dumps({"id": q["id"], "answer": answer, "citations": [h.payload["id"] for h in hits]}) + "\n")
    secs = time.perf_counter() - start
    latencies.sort()
    print(json.dumps({"system": "python-pipeline", "questions": len(questions), "seconds": secs,
                      "questions_per_s": len(questions) / secs,
                      "p50_ms": latencies[len(latencies) // 2] * 1e3, "threads": torch.get_num_threads()}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encoder")
    e.add_argument("--input", required=True)
    e.add_argument("--limit", type=int, default=1000)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    for name in ["llamacpp", "llamacpp-batched", "transformers"]:
        d = sub.add_parser(name)
        d.add_argument("--streams", type=int, default=1)
        d.add_argument("--new-tokens", type=int, default=64)
        d.add_argument("--threads", type=int, default=2)
    b = sub.add_parser("batch-qa")
    b.add_argument("--paragraphs", required=True)
    b.add_argument("--questions", required=True)
    b.add_argument("--output", required=True)
    b.add_argument("--top-k", type=int, default=4)
    b.add_argument("--new-tokens", type=int, default=32)
    b.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    {"encoder": encoder, "llamacpp": llamacpp, "llamacpp-batched": llamacpp_batched,
     "transformers": transformers_generate, "batch-qa": batch_qa}[args.cmd](args)


if __name__ == "__main__":
    main()
