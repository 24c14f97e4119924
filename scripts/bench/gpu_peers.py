"""Peers of the CUDA benchmarks (scripts/bench/gpu.sh), with random weights of real shapes, as
`memgpt bench decoder --shape` and `memgpt bench encoder` on a random-weight folder use. Each
measurement prints one JSON line like the Rust side.

    gpu_peers.py encoder-model --tokenizer-dir models/all-MiniLM-L6-v2 --out DIR/all-MiniLM-L6-v2
    gpu_peers.py encoder --model DIR/all-MiniLM-L6-v2 --input corpus.jsonl.gz --batch-size 32 --repeat 3
    gpu_peers.py decoder --shape smollm2-135m --streams 1,16 --new-tokens 128 --repeat 3
"""

import argparse
import gzip
import json
import os
import shutil
import time

# The same shapes as crates/models/src/llama/random.rs (LlamaConfig::preset).
SHAPES = {
    "smollm2-135m": dict(num_hidden_layers=30, hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, rope_theta=100000.0, vocab_size=49152,
                         tie_word_embeddings=True),
    "llama3-8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, rope_theta=500000.0, vocab_size=128256,
                      tie_word_embeddings=False),
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json"]


def encoder_model(args):
    """A sentence-transformers folder of all-MiniLM-L6-v2's shape with random weights (f32) and
    the real tokenizer and pooling configuration."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    BertModel(config).save_pretrained(args.out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        src = os.path.join(args.tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))
    os.makedirs(os.path.join(args.out, "1_Pooling"), exist_ok=True)
    with open(os.path.join(args.out, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}, f)


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def read_texts(path, limit):
    opener = gzip.open if path.endswith(".gz") else open
    texts = []
    with opener(path, "rt") as f:
        for line in f:
            d = json.loads(line)
            texts.append((d.get("title", "") + " " + d.get("text", "")).strip())
            if len(texts) == limit:
                break
    return texts


def encoder(args):
    import torch
    from sentence_transformers import SentenceTransformer

    texts = read_texts(args.input, args.limit)
    for precision in args.precision.split(","):
        model = SentenceTransformer(args.model, device=args.device)
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        model.encode(texts[: args.batch_size], batch_size=args.batch_size)
        for _ in range(args.repeat):
            sync()
            start = time.perf_counter()
            model.encode(texts, batch_size=args.batch_size)
            sync()
            secs = time.perf_counter() - start
            print(json.dumps({"system": f"sentence-transformers-{precision}", "device": args.device,
                              "documents": len(texts), "batch_size": args.batch_size, "seconds": secs,
                              "documents_per_s": len(texts) / secs}), flush=True)


def decoder(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[args.shape], rms_norm_eps=1e-5, max_position_embeddings=8192)
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    vocab = config.vocab_size
    # The same synthetic prompt as LlamaConfig::synthetic_prompt (crates/models/src/llama/random.rs).
    prompt = [(i * 7919 + 13) % vocab for i in range(args.prompt_tokens)]
    for streams in [int(s) for s in args.streams.split(",")]:
        ids = torch.tensor([prompt] * streams, device=args.device)
        kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=None, pad_token_id=0)

        def run(n):
            sync()
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs)
            sync()
            return time.perf_counter() - start, out.shape[1] - ids.shape[1]

        with torch.no_grad():
            run(args.new_tokens)
            for _ in range(args.repeat):
                prefill, _ = run(1)
                total, new = run(args.new_tokens)
                print(json.dumps({"system": "transformers", "model": f"random {args.shape}", "device": args.device,
                                  "streams": streams, "prompt_tokens": len(prompt), "new_tokens_per_stream": new,
                                  "prefill_tokens_per_s": len(prompt) * streams / prefill,
                                  "decode_tokens_per_s": (new - 1) * streams / max(total - prefill, 1e-9)}),
                      flush=True)
    del model
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("encoder-model")
    m.add_argument("--tokenizer-dir", required=True)
    m.add_argument("--out", required=True)
    e = sub.add_parser("encoder")
    e.add_argument("--model", required=True)
    e.add_argument("--input", required=True)
    e.add_argument("--limit", type=int, default=1_000_000)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--precision", default="f32,bf16")
    e.add_argument("--repeat", type=int, default=3)
    d = sub.add_parser("decoder")
    d.add_argument("--shape", choices=sorted(SHAPES), required=True)
    d.add_argument("--streams", default="1,16")
    d.add_argument("--new-tokens", type=int, default=128)
    d.add_argument("--prompt-tokens", type=int, default=128)
    d.add_argument("--repeat", type=int, default=3)
    for sp in (e, d):
        sp.add_argument("--device", default="cuda")
    args = p.parse_args()
    {"encoder-model": encoder_model, "encoder": encoder, "decoder": decoder}[args.cmd](args)


if __name__ == "__main__":
    main()
