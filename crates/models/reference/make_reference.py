"""Produces the reference data of the models' tests, once, by hand (the tests only read it).

    .venv/bin/pip install sentence-transformers==5.1.2 transformers==4.57.3 gguf==0.17.1 \
        accelerate==1.12.0 torch==2.11.0
    .venv/bin/python crates/models/reference/make_reference.py

Encoder: sentence-transformers' embeddings of 50 varied texts (short, longer than the model's
256 tokens, non-ASCII, one empty string). Decoder: transformers loads the same GGUF file
(dequantised to f32, as the Rust loader does) and produces, for 10 chat prompts rendered with
the model's template, the greedy continuation of 32 tokens and the first step's top logits.
"""

import json
import os

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.path.join(ROOT, "models")
OUT = os.path.dirname(os.path.abspath(__file__))

LONG = " ".join(
    f"Sentence {i} of a long passage about retrieval, memory and attention in language models."
    for i in range(60)
)

TEXTS = [
    "",
    "a",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Vitamin D deficiency is associated with an increased risk of fractures.",
    "0-dimensional biomaterials show inductive properties.",
    "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors.",
    "Rust's ownership model prevents data races at compile time.",
    "Qdrant shards collections across nodes and replicates each shard.",
    "gRPC uses HTTP/2 for transport and Protocol Buffers for serialisation.",
    "Le chat est sur la table, et le chien dort dans le jardin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "東京は日本の首都です。",
    "北京是中华人民共和国的首都。",
    "서울은 대한민국의 수도이다.",
    "Москва — столица России.",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "Emoji test 🚀🔥 with symbols © ® ™ and math ∑ ∫ √",
    "Ünïcödé äccénts ñ ç ø å ß",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "UPPER CASE TEXT SHOULD BE LOWERED BY THE TOKENIZER",
    "numbers 1234567890 and 3.14159 and 2.71828",
    "email@example.com https://example.org/path?q=1",
    "C++ templates, Python's list comprehensions and Haskell's monads.",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy.",
    "Insulin regulates blood glucose levels.",
    "Antibiotics are ineffective against viral infections.",
    "The Treaty of Westphalia was signed in 1648.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Neural networks approximate functions by composing linear maps and nonlinearities.",
    "Memory-augmented models retrieve facts instead of storing them in weights.",
    "A kv cache stores the keys and values of previous tokens.",
    LONG,
    LONG + " And a different tail to make it unique.",
    "word " * 300,
    "x" * 2000,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "?!?!?! ... --- ;;; :::",
    "[CLS] [SEP] [MASK] [PAD] literal special-token strings",
    "The patient presented with fever, cough and shortness of breath.",
    "Stock prices fell sharply after the announcement.",
    "She sells sea shells by the sea shore.",
]
assert len(TEXTS) == 50, len(TEXTS)

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a vector database is in one sentence.",
    "List three prime numbers.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Summarise: The mitochondria is the powerhouse of the cell. It produces ATP.",
    "Who wrote Romeo and Juliet?",
    "Give me a name for a pet turtle.",
    "Why is the sky blue?",
]


def encoder_reference():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(os.path.join(MODELS, "all-MiniLM-L6-v2"), device="cpu")
    emb = model.encode(TEXTS, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    with open(os.path.join(OUT, "encoder.json"), "w") as f:
        json.dump({"texts": TEXTS, "embeddings": [[round(float(x), 7) for x in e] for e in emb]}, f)


def decoder_reference():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=gguf, torch_dtype=torch.float32)
    model.eval()
    cases = []
    for prompt in PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            first = model(ids).logits[0, -1]
            # An explicit mask: with pad == eos, generate would otherwise mask the prompt's <|im_end|>.
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                eos_token_id=None, pad_token_id=tok.eos_token_id,
            )
        top = torch.topk(first, 20)
        cases.append({
            "prompt": prompt,
            "rendered": text,
            "prompt_ids": ids[0].tolist(),
            "greedy_ids": out[0, ids.shape[1]:].tolist(),
            "top_logit_ids": top.indices.tolist(),
            "top_logits": [round(float(x), 5) for x in top.values],
        })
    with open(os.path.join(OUT, "decoder.json"), "w") as f:
        json.dump({"model": gguf, "max_new_tokens": 32, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    import sys

    torch.set_num_threads(os.cpu_count() or 1)
    if "--decoder-only" not in sys.argv:
        encoder_reference()
    decoder_reference()
