//! Text in and out of the models: tokenisers (tokenizer.json, or BPE from GGUF metadata) and
//! the model's own chat template.

pub mod chat;
pub mod tokenizer;
