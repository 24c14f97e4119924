//! A loaded decoder: the llama model, its tokeniser, chat template and stop tokens, plus
//! greedy generation (one sequence, or a batch decoded together) used by tests, evaluation
//! and benchmarks. The generator service adds sampling and continuous batching on top.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{ModelError, Result};
use crate::gguf::{Gguf, Value};
use crate::llama::Llama;
use crate::tokenizer::TextTokenizer;
use crate::weights::read_json;

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
        self.greedy_inner(prompts, max_new, true)
    }

    /// As [`Decoder::greedy_batch`], always generating `max_new` tokens (benchmarks).
    pub fn greedy_batch_no_eos(&self, prompts: &[Vec<u32>], max_new: usize) -> Result<(Vec<Vec<u32>>, Tensor)> {
        self.greedy_inner(prompts, max_new, false)
    }

    fn greedy_inner(&self, prompts: &[Vec<u32>], max_new: usize, stop_at_eos: bool) -> Result<(Vec<Vec<u32>>, Tensor)> {
        let _guard = tch::no_grad_guard();
        let device = self.model.device;
        let b = prompts.len() as i64;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
        if longest == 0 {
            return Err(ModelError::InvalidInput { field: "prompt".into(), reason: "is empty".into() });
        }
        let capacity = longest + max_new as i64;
        if capacity > self.model.config.context_length {
            return Err(ModelError::InvalidInput { field: "prompt".into(), reason: format!("{capacity} tokens exceed the context length {}", self.model.config.context_length) });
        }
        let mut ids = vec![0i64; (b * longest) as usize];
        let mut positions = vec![0i64; (b * longest) as usize];
        let mut valid = vec![false; (b * capacity) as usize];
        for (row, p) in prompts.iter().enumerate() {
            let pad = longest as usize - p.len();
            for (j, &t) in p.iter().enumerate() {
                ids[row * longest as usize + pad + j] = t as i64;
                positions[row * longest as usize + pad + j] = j as i64;
            }
            for j in pad..capacity as usize {
                valid[row * capacity as usize + j] = true;
            }
        }
        let key_mask_full = Tensor::from_slice(&valid).view([b, capacity]).to_device(device);
        let padded = prompts.iter().any(|p| p.len() as i64 != longest);
        let mut cache = self.model.new_cache(b, capacity);
        let tokens = Tensor::from_slice(&ids).view([b, longest]).to_device(device);
        let pos = Tensor::from_slice(&positions).view([b, longest]).to_device(device);
        let mask = padded.then(|| key_mask_full.narrow(1, 0, longest));
        let mut logits = self.model.forward(&tokens, &pos, &mut cache, mask.as_ref())?;
        let first = logits.shallow_clone();
        let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
        let mut out = vec![Vec::new(); prompts.len()];
        let mut done = vec![false; prompts.len()];
        for step in 0..max_new {
            let next: Vec<i64> = Vec::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
            for (row, &t) in next.iter().enumerate() {
                if !done[row] {
                    out[row].push(t as u32);
                    if stop_at_eos && self.tokenizer.eos.contains(&(t as u32)) {
                        done[row] = true;
                    }
                }
            }
            if step + 1 == max_new || done.iter().all(|d| *d) {
                break;
            }
            let tokens = Tensor::from_slice(&next).view([b, 1]).to_device(device);
            let pos = Tensor::from_slice(&next_pos).view([b, 1]).to_device(device);
            next_pos.iter_mut().for_each(|p| *p += 1);
            let mask = padded.then(|| key_mask_full.narrow(1, 0, cache.len() + 1));
            logits = self.model.forward(&tokens, &pos, &mut cache, mask.as_ref())?;
        }
        Ok((out, first))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
