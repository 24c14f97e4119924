//! Greedy generation straight on the model: a batch of prompts left-padded into one KV cache
//! and decoded together. Used by tests, evaluation and benchmarks (the generator service has
//! its own continuous batching).

use tch::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::Llama;

impl Llama {
    /// Greedy continuation of several prompts decoded together (left-padded into one batch):
    /// up to `max_new` tokens each, a row stopping at any token of `eos` (included; empty: never).
    /// Returns the generated tokens of each, and the first step's logits ([B, vocab]).
    pub fn greedy_batch(&self, prompts: &[Vec<u32>], max_new: usize, eos: &[u32]) -> Result<(Vec<Vec<u32>>, Tensor)> {
        let _guard = tch::no_grad_guard();
        let device = self.device;
        let b = prompts.len() as i64;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
        if longest == 0 {
            return Err(ModelError::InvalidInput { field: "prompt".into(), reason: "is empty".into() });
        }
        let capacity = longest + max_new as i64;
        if capacity > self.config.context_length {
            return Err(ModelError::InvalidInput { field: "prompt".into(), reason: format!("{capacity} tokens exceed the context length {}", self.config.context_length) });
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
        let mut cache = self.new_cache(b, capacity);
        let tokens = Tensor::from_slice(&ids).view([b, longest]).to_device(device);
        let pos = Tensor::from_slice(&positions).view([b, longest]).to_device(device);
        let mask = padded.then(|| key_mask_full.narrow(1, 0, longest));
        let mut logits = self.forward(&tokens, &pos, &mut cache, mask.as_ref())?;
        let first = logits.shallow_clone();
        let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
        let mut out = vec![Vec::new(); prompts.len()];
        let mut done = vec![false; prompts.len()];
        for step in 0..max_new {
            let next: Vec<i64> = Vec::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
            for (row, &t) in next.iter().enumerate() {
                if !done[row] {
                    out[row].push(t as u32);
                    if eos.contains(&(t as u32)) {
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
            logits = self.forward(&tokens, &pos, &mut cache, mask.as_ref())?;
        }
        Ok((out, first))
    }
}
