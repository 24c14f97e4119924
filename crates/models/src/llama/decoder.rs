//! A loaded decoder: the llama model, its tokeniser, chat template and stop tokens, plus
//! greedy generation (one sequence, or a batch decoded together) used by tests, evaluation
//! and benchmarks. The generator service adds sampling and continuous batching on top.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::text::chat::{ChatMessage, ChatTemplate};
use crate::error::{ModelError, Result};
use crate::formats::gguf::{Gguf, Value};
use crate::llama::Llama;
use crate::text::tokenizer::TextTokenizer;
use crate::formats::weights::read_json;

/// A decoder ready to generate.
pub struct Decoder {
    /// The model.
    pub model: Llama,
    /// Its tokeniser.
    pub tokenizer: TextTokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    /// A name for logs and Info.
    pub name: String,
}

impl Decoder {
    /// Loads a GGUF file or a Hugging Face folder.
    pub fn load(path: &Path, device: Device, kind: Kind) -> Result<Self> {
        if path.is_dir() {
            return Self::load_hf(path, device, kind);
        }
        if !path.exists() {
            return Err(ModelError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "model file not found")));
        }
        let gguf = Gguf::open(path)?;
        let tokenizer = TextTokenizer::from_gguf(&gguf)?;
        let template = match gguf.metadata.get("tokenizer.chat_template").and_then(Value::as_str) {
            Some(source) => ChatTemplate::new(source, &tokenizer.bos_text, &tokenizer.eos_text)?,
            None => ChatTemplate::chatml(),
        };
        let name = gguf.metadata.get("general.name").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| file_name(path));
        let model = Llama::from_gguf(gguf, device, kind)?;
        Ok(Self { model, tokenizer, template, name })
    }

    fn load_hf(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let mut tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let tk_config_path = dir.join("tokenizer_config.json");
        let tk_config = if tk_config_path.exists() { read_json(&tk_config_path)? } else { Default::default() };
        let token_text = |key: &str| -> Option<String> {
            match tk_config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
                _ => None,
            }
        };
        tokenizer.eos_text = token_text("eos_token").unwrap_or_default();
        tokenizer.bos_text = token_text("bos_token").unwrap_or_default();
        let vocab = tokenizer.inner().get_vocab(true);
        for name in [tokenizer.eos_text.as_str(), "<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if let Some(&id) = vocab.get(name) {
                if !tokenizer.eos.contains(&id) {
                    tokenizer.eos.push(id);
                }
            }
        }
        let template = match tk_config.get("chat_template").and_then(|v| v.as_str()) {
            Some(source) => ChatTemplate::new(source, &tokenizer.bos_text, &tokenizer.eos_text)?,
            None => ChatTemplate::chatml(),
        };
        let model = Llama::from_hf_dir(dir, device, kind)?;
        Ok(Self { model, tokenizer, template, name: file_name(dir) })
    }

    /// Prompt token ids of chat messages rendered through the model's template.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages)?;
        let mut ids: Vec<u32> = self.tokenizer.bos.into_iter().collect();
        ids.extend(self.tokenizer.encode(&text)?);
        Ok(ids)
    }

    /// Greedy continuation of one prompt: up to `max_new` tokens, stopping at an EOS token
    /// (which is included). Also returns the first step's logits.
    pub fn greedy(&self, prompt: &[u32], max_new: usize) -> Result<(Vec<u32>, Tensor)> {
        let (mut out, first) = self.greedy_batch(&[prompt.to_vec()], max_new)?;
        Ok((out.remove(0), first.get(0)))
    }

    /// Greedy continuation of several prompts decoded together (left-padded into one batch).
    /// Returns the generated tokens of each, and the first step's logits ([B, vocab]).
    pub fn greedy_batch(&self, prompts: &[Vec<u32>], max_new: usize) -> Result<(Vec<Vec<u32>>, Tensor)> {
        self.model.greedy_batch(prompts, max_new, &self.tokenizer.eos)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
